"""All emulator state, in memory, behind one lock.

:class:`EmulatorState` holds the Stripe objects (sessions, payment intents, charges, refunds,
events), the idempotency store, fault-injection settings and the webhook dispatcher. Its public
methods are thread-safe and return deep copies, so request threads never share mutable objects.
Business rules follow docs/STRIPE.md §2 to §6; conditional create rules follow §8.
"""

from __future__ import annotations

import copy
import fnmatch
import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from stripe_emulator import cards, objects, pricing, rules
from stripe_emulator.clock import Clock
from stripe_emulator.errors import (
    ParamError,
    StripeAPIError,
    parameter_missing,
    resource_missing,
)
from stripe_emulator.webhooks import WebhookConfig, WebhookDispatcher

IDEMPOTENCY_TTL = 24 * 3600
EVENT_RETENTION = 30 * 24 * 3600
#: How many ``/v1`` requests the request log keeps (the oldest are forgotten first).
REQUEST_LOG_SIZE = 10_000


#: Which fields of which object kinds ``expand[]`` accepts, and what they expand into.
#: ``None`` means "expandable, but always null in the emulator".
_EXPANDABLE: dict[str, dict[str, str | None]] = {
    "checkout.session": {
        "line_items": "list:item",
        "shipping_cost": "shipping_cost",
        "total_details": "total_details",
        "discounts": "session_discount",
        "payment_intent": "payment_intent",
        "customer": None,
        "invoice": None,
        "payment_link": None,
        "setup_intent": None,
        "subscription": None,
    },
    "shipping_cost": {"shipping_rate": "shipping_rate"},
    "total_details": {"breakdown": None},
    "shipping_rate": {},
    "session_discount": {"coupon": "coupon", "promotion_code": "promotion_code"},
    "coupon": {},
    "promotion_code": {"coupon": "coupon"},
    "payment_intent": {"latest_charge": "charge", "customer": None, "review": None},
    "charge": {"payment_intent": "payment_intent", "refunds": "list:refund", "customer": None},
    "refund": {"charge": "charge", "payment_intent": "payment_intent"},
    "item": {"price": "price"},
    "price": {"product": "product"},
    "product": {},
    "event": {},
}

#: Demo shipping addresses the hosted page pre-fills, keyed by country.
DEMO_ADDRESSES: dict[str, dict[str, str]] = {
    "DE": {"line1": "Teststraße 1", "city": "Berlin", "postal_code": "10115", "state": ""},
    "FR": {"line1": "12 Rue de Rivoli", "city": "Paris", "postal_code": "75001", "state": ""},
    "GB": {"line1": "10 Downing Street", "city": "London", "postal_code": "SW1A 2AA", "state": ""},
    "US": {
        "line1": "354 Oyster Point Blvd",
        "city": "South San Francisco",
        "postal_code": "94080",
        "state": "CA",
    },
    "NL": {"line1": "Damrak 1", "city": "Amsterdam", "postal_code": "1012 LG", "state": ""},
    "AT": {"line1": "Stephansplatz 1", "city": "Wien", "postal_code": "1010", "state": ""},
}
DEMO_NAME = "Jenny Rosen"


def demo_address(country: str) -> dict[str, Any]:
    """A plausible address in ``country`` (generic when the country has no template)."""
    template = DEMO_ADDRESSES.get(
        country, {"line1": "1 Example Street", "city": "Example City", "postal_code": "12345"}
    )
    return {
        "line1": template["line1"],
        "line2": None,
        "city": template["city"],
        "postal_code": template["postal_code"],
        "state": template.get("state") or None,
        "country": country,
    }


@dataclass(frozen=True)
class RequestInfo:
    """The API request that causes an event (``event.request``); empty for customer actions."""

    id: str | None = None
    idempotency_key: str | None = None

    def as_event_request(self) -> dict[str, str | None]:
        return {"id": self.id, "idempotency_key": self.idempotency_key}


@dataclass
class FaultConfig:
    """Fault injection for ``/v1`` routes (see ``POST /_emulator/faults``)."""

    delay_seconds: float = 0.0
    fail_next: int = 0
    fail_status: int = 500
    timeout_next: int = 0
    hang_seconds: float = 10.0
    paths: list[str] | None = None

    def matches(self, path: str) -> bool:
        return self.paths is None or any(path.startswith(prefix) for prefix in self.paths)

    def as_dict(self) -> dict[str, Any]:
        return {
            "delay_seconds": self.delay_seconds,
            "fail_next": self.fail_next,
            "fail_status": self.fail_status,
            "timeout_next": self.timeout_next,
            "hang_seconds": self.hang_seconds,
            "paths": self.paths,
        }


@dataclass(frozen=True)
class FaultDecision:
    """What fault injection does to one request."""

    delay_seconds: float = 0.0
    hang_seconds: float = 0.0
    fail_status: int | None = None


@dataclass
class IdempotencyRecord:
    method: str
    path: str
    fingerprint: str
    created: int
    request_id: str
    in_flight: bool = True
    status: int = 0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Choice:
    """The customer's checked choices for one session."""

    shipping_rate: str | None
    coupon_id: str | None
    promotion_code_id: str | None


@dataclass
class _SessionExtra:
    """What a session needs internally but Stripe does not show."""

    line_item_ids: list[str]
    payment_intent_data: dict[str, Any]
    shipping_rate_ids: list[str] = field(default_factory=list)
    coupon_id: str | None = None
    promotion_code_id: str | None = None
    breakdown: dict[str, Any] = field(default_factory=lambda: {"discounts": [], "taxes": []})


class EmulatorState:
    """The emulator's in-memory world. Every public method takes the lock itself."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        webhook_url: str | None = None,
        webhook_secret: str = "whsec_emulator",  # noqa: S107 - a test-mode placeholder
        api_key_prefix: str = "sk_test_",
        public_base_url: str | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock or Clock()
        self.api_key_prefix = api_key_prefix
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        #: Set on shutdown: wakes requests sleeping in injected delays.
        self.stopping = threading.Event()
        self.webhooks = WebhookDispatcher(
            WebhookConfig(url=webhook_url, secret=webhook_secret),
            event_for=self._event_for_delivery,
            on_delivered=self._mark_delivered,
        )
        self._sweeper: threading.Thread | None = None
        self._clear()

    def _clear(self) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}
        self.line_items: dict[str, dict[str, Any]] = {}
        self.products: dict[str, dict[str, Any]] = {}
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.shipping_rates: dict[str, dict[str, Any]] = {}
        self.coupons: dict[str, dict[str, Any]] = {}
        self.promotion_codes: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.idempotency: dict[str, IdempotencyRecord] = {}
        self.faults = FaultConfig()
        self._extra: dict[str, _SessionExtra] = {}
        self._open: set[str] = set()
        self._seq: dict[str, int] = {}
        self._counter = itertools.count()
        self._received: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self._received_total = 0

    # --- lifecycle ------------------------------------------------------------------------

    def start(self, sweep_interval: float = 1.0) -> None:
        """Start the background threads: expiry sweeper and webhook dispatcher."""
        with self.lock:
            if self._sweeper is None:
                self._sweeper = threading.Thread(
                    target=self._sweep_forever,
                    args=(sweep_interval,),
                    name="stripe-emulator-sweeper",
                    daemon=True,
                )
                self._sweeper.start()
        self.webhooks.start()

    def close(self) -> None:
        """Stop background threads and wake requests that sleep in injected faults."""
        self.stopping.set()
        self.webhooks.stop()
        if self._sweeper is not None:
            self._sweeper.join(5)

    def _sweep_forever(self, interval: float) -> None:
        while not self.stopping.wait(interval):
            self.sweep()

    def reset(self) -> None:
        """Forget every object, event, idempotency key, fault and logged request; restore webhook
        settings."""
        with self.lock:
            self._clear()
            self.clock.reset()
        self.webhooks.reset()

    def now(self) -> int:
        return self.clock.now()

    # --- helpers --------------------------------------------------------------------------

    def _store(self, table: dict[str, dict[str, Any]], obj: dict[str, Any]) -> dict[str, Any]:
        table[obj["id"]] = obj
        self._seq[obj["id"]] = next(self._counter)
        return obj

    def _lookup(self, object_id: str) -> dict[str, Any] | None:
        for prefix, table in (
            ("cs_", self.sessions),
            ("pi_", self.payment_intents),
            ("ch_", self.charges),
            ("re_", self.refunds),
            ("prod_", self.products),
            ("evt_", self.events),
            ("shr_", self.shipping_rates),
            ("promo_", self.promotion_codes),
        ):
            if object_id.startswith(prefix):
                return table.get(object_id)
        return self.coupons.get(object_id)

    def retrieve(self, kind: str, object_id: str, expand: Iterable[str] = ()) -> dict[str, Any]:
        """``GET /v1/<objects>/<id>``: the object with ``expand`` filled in, or 404.

        A checkout session whose time ran out is expired first, as on Stripe.
        """
        expand = list(expand)
        self.check_expand(kind, expand)
        with self.lock:
            if kind == "checkout.session":
                return self.render(self._session(object_id), expand)
            found = self._tables()[kind].get(object_id)
            if found is None:
                raise resource_missing(kind, object_id)
            return self.render(found, expand)

    def _tables(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {
            "checkout.session": self.sessions,
            "payment_intent": self.payment_intents,
            "charge": self.charges,
            "refund": self.refunds,
            "coupon": self.coupons,
            "promotion_code": self.promotion_codes,
            "shipping_rate": self.shipping_rates,
            "event": self.events,
        }

    def _emit(
        self, event_type: str, obj: dict[str, Any], request: RequestInfo | None = None
    ) -> None:
        snapshot = copy.deepcopy(obj)
        event = objects.event_object(
            event_type,
            snapshot,
            now=self.now(),
            pending_webhooks=1 if self.webhooks.enabled else 0,
            request=(request or RequestInfo()).as_event_request(),
        )
        self._store(self.events, event)
        self.webhooks.enqueue(event["id"])

    def _event_for_delivery(self, event_id: str) -> dict[str, Any] | None:
        with self.lock:
            event = self.events.get(event_id)
            return copy.deepcopy(event) if event else None

    def _mark_delivered(self, event_id: str) -> None:
        with self.lock:
            event = self.events.get(event_id)
            if event is not None:
                event["pending_webhooks"] = 0

    # --- expiry -----------------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Expire every open session whose ``expires_at`` has passed; prune old idempotency keys.

        Returns the ids of the sessions expired now (each emits ``checkout.session.expired``).
        """
        with self.lock:
            now = self.now()
            due = [sid for sid in self._open if self.sessions[sid]["expires_at"] <= now]
            for session_id in sorted(due, key=self._seq.__getitem__):
                self._expire_locked(self.sessions[session_id], None)
            stale = [k for k, r in self.idempotency.items() if r.created <= now - IDEMPOTENCY_TTL]
            for key in stale:
                del self.idempotency[key]
            return due

    def _expire_locked(self, session: dict[str, Any], request: RequestInfo | None) -> None:
        session["status"] = "expired"
        session["url"] = None
        self._open.discard(session["id"])
        self._emit("checkout.session.expired", session, request)

    # --- rendering and expansion ------------------------------------------------------------

    def render(self, obj: dict[str, Any], expand: Iterable[str] = ()) -> dict[str, Any]:
        """A deep copy of ``obj`` with ``expand`` paths (already checked) filled in."""
        with self.lock:
            result = copy.deepcopy(obj)
            for path in expand:
                self._expand(result, path.split("."))
            return result

    def _expand(self, obj: dict[str, Any], parts: list[str]) -> None:
        head, rest = parts[0], parts[1:]
        if obj.get("object") == "list" and head == "data":
            for item in obj["data"]:
                if rest:
                    self._expand(item, rest)
            return
        kind = obj.get("object")
        if kind == "checkout.session" and parts == ["total_details", "breakdown"]:
            obj["total_details"]["breakdown"] = copy.deepcopy(self._extra[obj["id"]].breakdown)
            return
        if kind == "checkout.session" and head == "line_items":
            obj["line_items"] = self._line_items_list(obj["id"], {"limit": 100})
        elif kind == "charge" and head == "refunds":
            refunds = [r for r in self.refunds.values() if r["charge"] == obj["id"]]
            refunds.sort(key=lambda r: self._seq[r["id"]], reverse=True)
            obj["refunds"] = objects.list_object(
                copy.deepcopy(refunds), f"/v1/charges/{obj['id']}/refunds"
            )
        elif isinstance(obj.get(head), str):
            target = self._lookup(obj[head])
            if target is not None:
                obj[head] = copy.deepcopy(target)
        child = obj.get(head)
        if rest and isinstance(child, dict):
            self._expand(child, rest)
        elif rest and isinstance(child, list):  # a list of sub-objects, e.g. discounts[]
            for item in child:
                if isinstance(item, dict):
                    self._expand(item, rest)

    @staticmethod
    def check_expand(kind: str, paths: Iterable[str]) -> None:
        """Reject ``expand[]`` paths that do not exist for ``kind`` before anything runs."""
        for index, path in enumerate(paths):
            parts = path.split(".")
            if len(parts) > 4:
                raise ParamError(
                    "You cannot expand more than 4 levels of a property.",
                    param=f"expand[{index}]",
                )
            current: str | None = kind
            for part in parts:
                if current is None:
                    break
                if current.startswith("list:"):
                    if part != "data":
                        current = "?"
                    else:
                        current = current[len("list:") :]
                        continue
                fields = _EXPANDABLE.get(current, {})
                if part not in fields:
                    raise ParamError(
                        f"This property cannot be expanded ({path}).",
                        param=f"expand[{index}]",
                    )
                current = fields[part]

    # --- lists ------------------------------------------------------------------------------

    def _paginate(
        self,
        items: list[dict[str, Any]],
        params: dict[str, Any],
        url: str,
        kind: str,
        *,
        newest_first: bool = True,
    ) -> dict[str, Any]:
        """Stripe cursor pagination over ``items`` (any order; sorted here by creation)."""
        limit = params.get("limit", 10)
        if not 1 <= limit <= 100:
            raise ParamError("Invalid limit: must be between 1 and 100", param="limit", code=None)
        after, before = params.get("starting_after"), params.get("ending_before")
        if after and before:
            raise ParamError(
                "You may only specify one of these parameters: starting_after, ending_before.",
                param="ending_before",
                code="parameters_exclusive",
            )
        sign = -1 if newest_first else 1
        ordered = sorted(items, key=lambda item: sign * self._seq[item["id"]])
        cursor = after or before
        if cursor:
            if cursor not in self._seq:
                raise StripeAPIError(
                    400,
                    f"No such {kind}: '{cursor}'",
                    code="resource_missing",
                    param="starting_after" if after else "ending_before",
                    store=False,
                )
            mark = sign * self._seq[cursor]
            if after:
                ordered = [item for item in ordered if sign * self._seq[item["id"]] > mark]
            else:
                ordered = [item for item in ordered if sign * self._seq[item["id"]] < mark]
                page = ordered[-limit:]
                return objects.list_object(copy.deepcopy(page), url, has_more=len(ordered) > limit)
        page = ordered[:limit]
        return objects.list_object(copy.deepcopy(page), url, has_more=len(ordered) > limit)

    def _list(
        self,
        kind: str,
        params: dict[str, Any],
        *,
        equal: Iterable[str],
        created: bool = False,
        keep: Callable[[dict[str, Any]], bool] = lambda obj: True,
    ) -> dict[str, Any]:
        """``GET /v1/<objects>``: a page of those whose ``equal`` fields (and ``created``, if
        filtered on) match the params given and that ``keep`` keeps, ``expand`` filled in."""
        expand = params.get("expand", [])
        self.check_expand(f"list:{kind}", expand)
        with self.lock:
            items = [
                obj
                for obj in self._tables()[kind].values()
                if all(params.get(name) in (None, obj[name]) for name in equal)
                and (not created or self._created_matches(obj["created"], params.get("created")))
                and keep(obj)
            ]
            url = "/v1/" + kind.replace(".", "/") + "s"  # checkout.session -> checkout/sessions
            return self.render(self._paginate(items, params, url, kind), expand)

    @staticmethod
    def _created_matches(created: int, condition: Any) -> bool:
        if condition is None:
            return True
        if isinstance(condition, int):
            return created == condition
        checks: dict[str, Callable[[int], bool]] = {
            "gt": lambda bound: created > bound,
            "gte": lambda bound: created >= bound,
            "lt": lambda bound: created < bound,
            "lte": lambda bound: created <= bound,
        }
        return all(checks[op](bound) for op, bound in condition.items() if op in checks)

    # --- checkout sessions ------------------------------------------------------------------

    def create_session(self, params: dict[str, Any], *, base_url: str) -> dict[str, Any]:
        """Create an open Checkout Session from validated params (POST /v1/checkout/sessions)."""
        expand = params.get("expand", [])
        self.check_expand("checkout.session", expand)
        with self.lock:
            now = self.now()
            rules.check_session_create(params, now)
            session_id = objects.new_session_id()
            line_item_ids, currency = [], ""
            for item in params["line_items"]:
                price_data = item["price_data"]
                product = self._store(
                    self.products, objects.product_object(price_data["product_data"], now)
                )
                price = objects.price_object(price_data, product["id"], now)
                line_item = self._store(
                    self.line_items, objects.line_item_object(item, price, product["name"])
                )
                line_item_ids.append(line_item["id"])
                currency = price["currency"]
            rate_ids = self._shipping_rates_for(params.get("shipping_options") or [], now)
            coupon_id, promotion_code_id = self._discount_for(params, currency)
            base = self.public_base_url or base_url.rstrip("/")
            session = objects.session_object(
                params,
                session_id=session_id,
                url=f"{base}/checkout/{session_id}",
                now=now,
                currency=currency,
                totals=pricing.totals([]),
                shipping_options=[
                    {
                        "shipping_amount": self.shipping_rates[rate_id]["fixed_amount"]["amount"],
                        "shipping_rate": rate_id,
                    }
                    for rate_id in rate_ids
                ],
                discounts=(
                    [{"coupon": coupon_id, "promotion_code": promotion_code_id}]
                    if coupon_id
                    else []
                ),
            )
            session["metadata"] = rules.clean_metadata(session["metadata"])
            self._store(self.sessions, session)
            intent_data = dict(params.get("payment_intent_data", {}))
            intent_data["metadata"] = rules.clean_metadata(intent_data.get("metadata", {}))
            self._extra[session_id] = _SessionExtra(
                line_item_ids=line_item_ids,
                payment_intent_data=intent_data,
                shipping_rate_ids=rate_ids,
                coupon_id=coupon_id,
                promotion_code_id=promotion_code_id,
            )
            self._reprice(session, rate_ids[0] if rate_ids else None, country=None)
            self._open.add(session_id)
            return self.render(session, expand)

    def _shipping_rates_for(self, options: list[dict[str, Any]], now: int) -> list[str]:
        """The ids of the session's shipping rates: existing ones or made from rate data."""
        ids = []
        for index, option in enumerate(options):
            if "shipping_rate" in option:
                if option["shipping_rate"] not in self.shipping_rates:
                    raise rules.no_such(
                        "shipping_rate",
                        option["shipping_rate"],
                        param=f"shipping_options[{index}][shipping_rate]",
                    )
                ids.append(option["shipping_rate"])
            else:
                rate = objects.shipping_rate_object(option["shipping_rate_data"], now)
                ids.append(self._store(self.shipping_rates, rate)["id"])
        return ids

    def _discount_for(self, params: dict[str, Any], currency: str) -> tuple[str | None, str | None]:
        """``discounts=[{coupon}|{promotion_code}]`` on create: (coupon id, promotion code id)."""
        discounts = params.get("discounts") or []
        if len(discounts) > 1:
            raise ParamError("You may only specify one discount.", param="discounts")
        if not discounts:
            return None, None
        discount = discounts[0]
        if "promotion_code" in discount:
            promotion = self.promotion_codes.get(discount["promotion_code"])
            if promotion is None:
                raise rules.no_such(
                    "promotion_code",
                    discount["promotion_code"],
                    param="discounts[0][promotion_code]",
                )
            coupon_id = promotion["promotion"]["coupon"]
            self._check_redeemable(promotion, currency, param="discounts[0][promotion_code]")
            return coupon_id, promotion["id"]
        coupon = self.coupons.get(discount.get("coupon", ""))
        if coupon is None:
            raise rules.no_such("coupon", discount.get("coupon", ""), param="discounts[0][coupon]")
        self._check_coupon(coupon, currency, param="discounts[0][coupon]")
        return coupon["id"], None

    def _reprice(
        self, session: dict[str, Any], shipping_rate: str | None, *, country: str | None
    ) -> pricing.Totals:
        """Recompute the session's amounts for a shipping choice and a tax country."""
        totals = self._totals(session, shipping_rate, self._extra[session["id"]].coupon_id, country)
        objects.apply_totals(session, totals, shipping_rate, located=country is not None)
        extra = self._extra[session["id"]]
        for item_id, discount, tax in zip(
            extra.line_item_ids, totals.line_discounts, totals.line_taxes, strict=True
        ):
            item = self.line_items[item_id]
            exclusive = item["price"]["tax_behavior"] != "inclusive"
            item["amount_discount"] = discount
            item["amount_tax"] = tax
            item["amount_total"] = item["amount_subtotal"] - discount + (tax if exclusive else 0)
        extra.breakdown = self._breakdown(session, totals)
        return totals

    def _totals(
        self,
        session: dict[str, Any],
        shipping_rate: str | None,
        coupon_id: str | None,
        country: str | None,
    ) -> pricing.Totals:
        extra = self._extra[session["id"]]
        lines = [
            pricing.Line(
                self.line_items[item_id]["amount_subtotal"],
                self.line_items[item_id]["price"]["tax_behavior"],
            )
            for item_id in extra.line_item_ids
        ]
        rate = self.shipping_rates.get(shipping_rate or "")
        coupon = self.coupons.get(coupon_id or "")
        taxed = session["automatic_tax"]["enabled"] and country is not None
        return pricing.totals(
            lines,
            coupon=(
                pricing.Coupon(coupon["percent_off"], coupon["amount_off"]) if coupon else None
            ),
            shipping=(
                pricing.Line(rate["fixed_amount"]["amount"], rate["tax_behavior"]) if rate else None
            ),
            tax_country=country if taxed else None,
        )

    def _breakdown(self, session: dict[str, Any], totals: pricing.Totals) -> dict[str, Any]:
        """``total_details.breakdown`` (only shown when expanded, as on Stripe)."""
        extra = self._extra[session["id"]]
        discounts = []
        if extra.coupon_id and totals.discount:
            discounts.append(
                {
                    "amount": totals.discount,
                    "discount": {
                        "id": f"di_{session['id'][-24:]}",
                        "object": "discount",
                        "checkout_session": session["id"],
                        "promotion_code": extra.promotion_code_id,
                        "source": {"coupon": extra.coupon_id, "type": "coupon"},
                        "start": self.now(),
                        "end": None,
                    },
                }
            )
        taxes = []
        if totals.tax_country and totals.tax_rate_bps is not None:
            rate = objects.tax_rate_object(
                totals.tax_country,
                totals.tax_rate_bps,
                pricing.tax_name(totals.tax_country),
                self.now(),
            )
            taxes.append(
                {
                    "amount": totals.tax,
                    "rate": rate,
                    "taxability_reason": "standard_rated",
                    "taxable_amount": totals.subtotal - totals.discount + totals.shipping,
                }
            )
        return {"discounts": discounts, "taxes": taxes}

    def _session(self, session_id: str) -> dict[str, Any]:
        session = self.sessions.get(session_id)
        if session is None:
            raise resource_missing("checkout.session", session_id)
        if session["status"] == "open" and session["expires_at"] <= self.now():
            self._expire_locked(session, None)
        return session

    def session_snapshot(self, session_id: str) -> dict[str, Any] | None:
        """The session as stored (after lazy expiry), or ``None``: for the hosted page."""
        with self.lock:
            try:
                return copy.deepcopy(self._session(session_id))
            except StripeAPIError:
                return None

    def session_line_items(self, session_id: str) -> list[dict[str, Any]]:
        with self.lock:
            ids = self._extra[session_id].line_item_ids if session_id in self._extra else []
            return [copy.deepcopy(self.line_items[i]) for i in ids]

    def list_sessions(self, params: dict[str, Any]) -> dict[str, Any]:
        email = params.get("customer_details", {}).get("email")
        return self._list(
            "checkout.session",
            params,
            equal=("status", "payment_intent", "customer", "payment_link", "subscription"),
            created=True,
            keep=lambda s: email is None or (s["customer_details"] or {}).get("email") == email,
        )

    def list_line_items(self, session_id: str, params: dict[str, Any]) -> dict[str, Any]:
        expand = params.get("expand", [])
        self.check_expand("list:item", expand)
        with self.lock:
            self._session(session_id)
            return self.render(self._line_items_list(session_id, params), expand)

    def _line_items_list(self, session_id: str, params: dict[str, Any]) -> dict[str, Any]:
        items = [self.line_items[i] for i in self._extra[session_id].line_item_ids]
        url = f"/v1/checkout/sessions/{session_id}/line_items"
        return self._paginate(items, params, url, "item", newest_first=False)

    def expire_session(
        self, session_id: str, request: RequestInfo, expand: Iterable[str] = ()
    ) -> dict[str, Any]:
        """POST …/expire: only an open session expires; anything else is a 400."""
        expand = list(expand)
        self.check_expand("checkout.session", expand)
        with self.lock:
            session = self._session(session_id)
            if session["status"] != "open":
                raise StripeAPIError(
                    400,
                    'Only Checkout Sessions with a status in ["open"] can be expired. This '
                    f"Checkout Session has a status of `{session['status']}`.",
                    param="session",
                )
            self._expire_locked(session, request)
            return self.render(session, expand)

    # --- paying -----------------------------------------------------------------------------

    def complete_session(
        self,
        session_id: str,
        *,
        email: str,
        card: str = cards.SUCCESS_CARD,
        name: str | None = None,
        shipping_address: dict[str, Any] | None = None,
        shipping_rate: str | None = None,
        promotion_code: str | None = None,
    ) -> dict[str, Any]:
        """The customer pays an open session with ``card`` (see :mod:`stripe_emulator.cards`).

        ``shipping_rate`` picks one of the session's shipping options (default: the first);
        ``promotion_code`` is a code the customer typed (only with ``allow_promotion_codes``).
        Tax (with ``automatic_tax``) is computed from the shipping country, else the billing
        country of the card, at the test rates of :mod:`stripe_emulator.pricing`.

        Raises 402 ``card_error`` for declined or invalid cards (the session stays open) and
        400 when the session is not open. On success the session is ``complete``; with an
        async card its ``payment_status`` stays ``unpaid`` until :meth:`settle_async`.
        """
        outcome = cards.classify(card)
        if outcome.result in ("declined", "invalid"):
            raise StripeAPIError(
                402,
                outcome.message or "Your card was declined.",
                type="card_error",
                code="card_declined" if outcome.result == "declined" else "incorrect_number",
                decline_code=outcome.decline_code,
            )
        with self.lock:
            session = self._session(session_id)
            if session["status"] != "open":
                raise StripeAPIError(
                    400,
                    f"This Checkout Session is no longer open (status: {session['status']}).",
                    param="session",
                )
            now = self.now()
            collection = session["shipping_address_collection"]
            if collection and shipping_address is None:
                shipping_address = demo_address(collection["allowed_countries"][0])
                name = name or DEMO_NAME
            shipping = (
                {"name": name or DEMO_NAME, "address": dict(shipping_address)}
                if collection and shipping_address
                else None
            )
            choice = self._choices(session, shipping_rate, promotion_code)
            extra = self._extra[session_id]
            extra.coupon_id, extra.promotion_code_id = choice.coupon_id, choice.promotion_code_id
            if choice.promotion_code_id:
                session["discounts"] = [
                    {"coupon": choice.coupon_id, "promotion_code": choice.promotion_code_id}
                ]
            country = (shipping_address or {}).get("country") or cards.BILLING_COUNTRY
            self._reprice(session, choice.shipping_rate, country=country)
            self._redeem(choice.coupon_id, choice.promotion_code_id)
            session["customer_details"] = objects.customer_details(
                email, name, shipping_address if shipping else None
            )
            session["collected_information"]["shipping_details"] = shipping
            consent_collection = session["consent_collection"] or {}
            if consent_collection.get("terms_of_service") == "required" and session["consent"]:
                session["consent"]["terms_of_service"] = "accepted"
            session["status"] = "complete"
            session["url"] = None
            self._open.discard(session_id)
            if session["amount_total"] == 0:
                session["payment_status"] = "no_payment_required"
                self._emit("checkout.session.completed", session)
                return copy.deepcopy(session)
            pending = outcome.result == "async"
            intent = objects.payment_intent_object(
                amount=session["amount_total"],
                currency=session["currency"],
                now=now,
                payment_intent_data=self._extra[session_id].payment_intent_data,
                payment_method=objects.new_id("pm_"),
                status="processing" if pending else "succeeded",
                shipping=(
                    {**shipping, "carrier": None, "phone": None, "tracking_number": None}
                    if shipping
                    else None
                ),
            )
            billing = {
                "address": dict(shipping_address) if shipping else objects.empty_address(),
                "email": email,
                "name": name,
                "phone": None,
                "tax_id": None,
            }
            charge = objects.charge_object(
                payment_intent=intent,
                now=now,
                card_brand=outcome.brand,
                card_last4=outcome.last4,
                billing_details=billing,
                status="pending" if pending else "succeeded",
            )
            intent["latest_charge"] = charge["id"]
            self._store(self.payment_intents, intent)
            self._store(self.charges, charge)
            session["payment_intent"] = intent["id"]
            if pending:
                self._emit("payment_intent.processing", intent)
            else:
                session["payment_status"] = "paid"
                self._emit("payment_intent.succeeded", intent)
            self._emit("checkout.session.completed", session)
            return copy.deepcopy(session)

    def settle_async(self, session_id: str, *, succeeded: bool) -> dict[str, Any]:
        """Decide a pending (``complete`` + ``unpaid``) payment: paid, or failed for good."""
        with self.lock:
            session = self._session(session_id)
            intent = self.payment_intents.get(session["payment_intent"] or "")
            if (
                session["status"] != "complete"
                or session["payment_status"] != "unpaid"
                or intent is None
                or intent["status"] != "processing"
            ):
                raise StripeAPIError(
                    400,
                    "Only a complete session with a pending (unpaid) payment can be settled.",
                    param="session",
                )
            charge = self.charges[intent["latest_charge"]]
            if succeeded:
                charge.update(
                    status="succeeded",
                    paid=True,
                    captured=True,
                    amount_captured=charge["amount"],
                    balance_transaction=objects.new_id("txn_"),
                )
                intent.update(status="succeeded", amount_received=intent["amount"])
                session["payment_status"] = "paid"
                self._emit("payment_intent.succeeded", intent)
                self._emit("checkout.session.async_payment_succeeded", session)
            else:
                charge.update(
                    status="failed",
                    failure_code="generic_decline",
                    failure_message="The payment failed.",
                )
                intent.update(
                    status="requires_payment_method",
                    last_payment_error={
                        "type": "card_error",
                        "code": "card_declined",
                        "decline_code": "generic_decline",
                        "message": "The payment failed.",
                        "charge": charge["id"],
                    },
                )
                self._emit("payment_intent.payment_failed", intent)
                self._emit("checkout.session.async_payment_failed", session)
            return copy.deepcopy(session)

    # --- what the customer chooses: shipping rate, promotion code ---------------------------

    def _choices(
        self, session: dict[str, Any], shipping_rate: str | None, code: str | None
    ) -> _Choice:
        """Check the customer's choices against the session; raise 400 for a bad one."""
        extra = self._extra[session["id"]]
        if shipping_rate is None:
            shipping_rate = extra.shipping_rate_ids[0] if extra.shipping_rate_ids else None
        elif shipping_rate not in extra.shipping_rate_ids:
            raise ParamError(
                "The shipping rate is not one of this Checkout Session's shipping options.",
                param="shipping_rate",
            )
        coupon_id, promotion_code_id = extra.coupon_id, extra.promotion_code_id
        if code:
            if not session["allow_promotion_codes"]:
                raise ParamError(
                    "This Checkout Session does not accept promotion codes.",
                    param="promotion_code",
                )
            promotion = self._promotion_by_code(code)
            if promotion is None:
                raise ParamError("This code is invalid.", param="promotion_code")
            self._check_redeemable(
                promotion,
                session["currency"],
                param="promotion_code",
                subtotal=session["amount_subtotal"],
            )
            coupon_id, promotion_code_id = promotion["promotion"]["coupon"], promotion["id"]
        return _Choice(shipping_rate, coupon_id, promotion_code_id)

    def preview(
        self,
        session_id: str,
        *,
        shipping_rate: str | None,
        promotion_code: str | None,
        country: str | None,
    ) -> pricing.Totals:
        """What the session would cost with these choices (the hosted page's summary)."""
        with self.lock:
            session = self._session(session_id)
            choice = self._choices(session, shipping_rate, promotion_code)
            return self._totals(session, choice.shipping_rate, choice.coupon_id, country)

    def shipping_options(self, session_id: str) -> list[dict[str, Any]]:
        with self.lock:
            ids = self._extra[session_id].shipping_rate_ids if session_id in self._extra else []
            return [copy.deepcopy(self.shipping_rates[rate_id]) for rate_id in ids]

    def _promotion_by_code(self, code: str) -> dict[str, Any] | None:
        wanted = code.strip().lower()
        for promotion in self.promotion_codes.values():
            if promotion["active"] and promotion["code"].lower() == wanted:
                return promotion
        return None

    def _check_usable(
        self, code: dict[str, Any], *, usable: bool, ends_at: int | None, param: str
    ) -> None:
        """A coupon or promotion code that is switched off, used up or past its end is refused."""
        spent = (
            code["max_redemptions"] is not None
            and code["times_redeemed"] >= code["max_redemptions"]
        )
        if not usable or spent or (ends_at is not None and ends_at <= self.now()):
            raise ParamError("This code is no longer valid.", param=param)

    def _check_coupon(self, coupon: dict[str, Any], currency: str, *, param: str) -> None:
        self._check_usable(coupon, usable=coupon["valid"], ends_at=coupon["redeem_by"], param=param)
        if coupon["amount_off"] is not None and coupon["currency"] != currency:
            raise ParamError(
                f"This code can only be used with {coupon['currency'].upper()} purchases.",
                param=param,
            )

    def _check_redeemable(
        self,
        promotion: dict[str, Any],
        currency: str,
        *,
        param: str,
        subtotal: int | None = None,
    ) -> None:
        self._check_usable(
            promotion, usable=promotion["active"], ends_at=promotion["expires_at"], param=param
        )
        restrictions = promotion["restrictions"]
        minimum = restrictions["minimum_amount"]
        too_small = (
            minimum is not None
            and subtotal is not None
            and (restrictions["minimum_amount_currency"] != currency or subtotal < minimum)
        )
        if too_small:
            money = objects.format_money(minimum, restrictions["minimum_amount_currency"])
            raise ParamError(f"This code needs a purchase of at least {money}.", param=param)
        self._check_coupon(self.coupons[promotion["promotion"]["coupon"]], currency, param=param)

    def _redeem(self, coupon_id: str | None, promotion_code_id: str | None) -> None:
        if coupon_id:
            self.coupons[coupon_id]["times_redeemed"] += 1
        if promotion_code_id:
            self.promotion_codes[promotion_code_id]["times_redeemed"] += 1

    # --- coupons, promotion codes, shipping rates -------------------------------------------

    def create_coupon(self, params: dict[str, Any]) -> dict[str, Any]:
        expand = params.get("expand", [])
        self.check_expand("coupon", expand)
        with self.lock:
            rules.check_coupon(params, self.now())
            if params.get("id") in self.coupons:
                raise StripeAPIError(
                    400,
                    f"Coupon already exists: {params['id']}",
                    code="resource_already_exists",
                    param="id",
                )
            coupon = objects.coupon_object(params, self.now())
            coupon["metadata"] = rules.clean_metadata(coupon["metadata"])
            self._store(self.coupons, coupon)
            return self.render(coupon, expand)

    def create_promotion_code(self, params: dict[str, Any]) -> dict[str, Any]:
        expand = params.get("expand", [])
        self.check_expand("promotion_code", expand)
        with self.lock:
            rules.check_promotion_code(params, self.now())
            coupon_id = params["promotion"]["coupon"]
            if coupon_id not in self.coupons:
                raise rules.no_such("coupon", coupon_id, param="promotion[coupon]")
            code = params.get("code") or objects.new_id("", 8).upper()
            if params.get("active", True) and self._promotion_by_code(code) is not None:
                raise StripeAPIError(
                    400,
                    f"An active promotion code with `code: {code}` already exists.",
                    param="code",
                    store=False,
                )
            promotion = objects.promotion_code_object(params, code, self.now())
            promotion["metadata"] = rules.clean_metadata(promotion["metadata"])
            self._store(self.promotion_codes, promotion)
            return self.render(promotion, expand)

    def list_promotion_codes(self, params: dict[str, Any]) -> dict[str, Any]:
        coupon = params.get("coupon")
        return self._list(
            "promotion_code",
            params,
            equal=("code", "active"),
            keep=lambda promotion: coupon in (None, promotion["promotion"]["coupon"]),
        )

    def create_shipping_rate(self, params: dict[str, Any]) -> dict[str, Any]:
        expand = params.get("expand", [])
        self.check_expand("shipping_rate", expand)
        with self.lock:
            rules.check_shipping_rate(params, "", None)
            rate = objects.shipping_rate_object(params, self.now())
            rate["metadata"] = rules.clean_metadata(rate["metadata"])
            self._store(self.shipping_rates, rate)
            return self.render(rate, expand)

    # --- refunds ----------------------------------------------------------------------------

    def create_refund(self, params: dict[str, Any], request: RequestInfo) -> dict[str, Any]:
        """POST /v1/refunds (docs/STRIPE.md §4): refund a succeeded charge, fully or partly."""
        expand = params.get("expand", [])
        self.check_expand("refund", expand)
        intent_id, charge_id = params.get("payment_intent"), params.get("charge")
        if not intent_id and not charge_id:
            raise ParamError(
                "One of the following params should be provided for this request: "
                "payment_intent or charge.",
                param="payment_intent",
                code="parameter_missing",
            )
        if "amount" in params and params["amount"] < 1:
            raise ParamError(
                "Invalid positive integer", param="amount", code="parameter_invalid_integer"
            )
        if params.get("origin"):
            raise ParamError(
                "The local Stripe emulator does not support customer balance refunds.",
                param="origin",
            )
        rules.check_metadata(params.get("metadata", {}), "metadata")
        with self.lock:
            charge = self._refundable_charge(intent_id, charge_id)
            remaining = charge["amount"] - charge["amount_refunded"]
            if remaining <= 0:
                raise StripeAPIError(
                    400,
                    f"Charge {charge['id']} has already been refunded.",
                    code="charge_already_refunded",
                    charge=charge["id"],
                )
            amount = params.get("amount", remaining)
            if amount > remaining:
                money = objects.format_money
                raise StripeAPIError(
                    400,
                    f"Refund amount ({money(amount, charge['currency'])}) is greater than "
                    f"unrefunded amount on charge ({money(remaining, charge['currency'])})",
                    code="amount_too_large",
                    param="amount",
                    charge=charge["id"],
                )
            refund = objects.refund_object(
                charge=charge, amount=amount, now=self.now(), params=params
            )
            refund["metadata"] = rules.clean_metadata(refund["metadata"])
            self._store(self.refunds, refund)
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
            self._emit("refund.created", refund, request)
            self._emit("charge.refunded", charge, request)
            return self.render(refund, expand)

    def _refundable_charge(self, intent_id: str | None, charge_id: str | None) -> dict[str, Any]:
        charge = None
        if charge_id:
            charge = self.charges.get(charge_id)
            if charge is None:
                raise resource_missing("charge", charge_id, param="charge")
        if intent_id:
            intent = self.payment_intents.get(intent_id)
            if intent is None:
                raise resource_missing("payment_intent", intent_id, param="payment_intent")
            if charge is not None and charge["payment_intent"] != intent_id:
                raise StripeAPIError(
                    400,
                    f"The charge {charge_id} does not belong to PaymentIntent {intent_id}.",
                    param="charge",
                )
            if charge is None and intent["latest_charge"]:
                charge = self.charges[intent["latest_charge"]]
            if charge is None or charge["status"] != "succeeded":
                raise StripeAPIError(
                    400,
                    f"This PaymentIntent ({intent_id}) does not have a successful charge to "
                    "refund.",
                    code="payment_intent_unexpected_state",
                    param="payment_intent",
                )
        if charge is None:
            raise parameter_missing("charge")
        if charge["status"] != "succeeded":
            raise StripeAPIError(
                400,
                f"Charge {charge['id']} has not succeeded, so it cannot be refunded.",
                param="charge",
            )
        return charge

    def list_refunds(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._list("refund", params, equal=("charge", "payment_intent"), created=True)

    # --- events -----------------------------------------------------------------------------

    def list_events(self, params: dict[str, Any]) -> dict[str, Any]:
        """GET /v1/events: the last 30 days, filtered by type (``*`` wildcards), created…"""
        if "type" in params and "types" in params:
            raise ParamError(
                "You may only specify one of these parameters: type, types.",
                param="types",
                code="parameters_exclusive",
            )
        self.check_expand("list:event", params.get("expand", []))
        patterns = params.get("types") or ([params["type"]] if "type" in params else None)
        delivered = params.get("delivery_success")
        with self.lock:
            oldest = self.now() - EVENT_RETENTION
            items = [
                e
                for e in self.events.values()
                if e["created"] >= oldest
                and (patterns is None or any(fnmatch.fnmatchcase(e["type"], p) for p in patterns))
                and (delivered is None or (e["pending_webhooks"] == 0) == delivered)
                and self._created_matches(e["created"], params.get("created"))
            ]
            return self._paginate(items, params, "/v1/events", "event")

    def resend_event(self, event_id: str) -> None:
        with self.lock:
            if event_id not in self.events:
                raise resource_missing("event", event_id)
        if not self.webhooks.enabled:
            raise StripeAPIError(400, "No webhook URL is configured.", param="url")
        self.webhooks.resend(event_id)

    # --- idempotency ------------------------------------------------------------------------

    def idempotency_begin(
        self, key: str, method: str, path: str, fingerprint: str, request_id: str
    ) -> IdempotencyRecord | None:
        """Claim ``key`` for a new request (``None``) or return the saved response to replay.

        Raises 400 ``idempotency_error`` when the key was used for another endpoint or other
        parameters, and 409 when the first request with the key is still running.
        """
        with self.lock:
            record = self.idempotency.get(key)
            now = self.now()
            if record is not None and record.created <= now - IDEMPOTENCY_TTL:
                record = None
            if record is None:
                self.idempotency[key] = IdempotencyRecord(
                    method, path, fingerprint, now, request_id
                )
                return None
            if (record.method, record.path) != (method, path):
                raise StripeAPIError(
                    400,
                    "Keys for idempotent requests can only be used for the same endpoint they "
                    f"were first used for ('{record.method} {record.path}' vs '{method} {path}'). "
                    f"Try using a key other than '{key}' if you meant to execute a different "
                    "request.",
                    type="idempotency_error",
                    store=False,
                )
            if record.fingerprint != fingerprint:
                raise StripeAPIError(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}' if you "
                    "meant to execute a different request.",
                    type="idempotency_error",
                    store=False,
                )
            if record.in_flight:
                raise StripeAPIError(
                    409,
                    "There is currently another in-progress request using this Idempotent Key "
                    "(that probably means you submitted twice, and the other request is still "
                    f"going through): '{key}'. Please try again later.",
                    code="idempotency_key_in_use",
                    store=False,
                    headers={"Stripe-Should-Retry": "true"},
                )
            return copy.copy(record)

    def idempotency_finish(
        self, key: str, request_id: str, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        with self.lock:
            record = self.idempotency.get(key)
            if record is not None and record.request_id == request_id:
                record.in_flight = False
                record.status, record.body, record.headers = status, body, headers

    def idempotency_abort(self, key: str, request_id: str) -> None:
        with self.lock:
            record = self.idempotency.get(key)
            if record is not None and record.request_id == request_id:
                del self.idempotency[key]

    # --- fault injection --------------------------------------------------------------------

    def set_faults(self, config: FaultConfig) -> None:
        with self.lock:
            self.faults = config

    def take_fault(self, path: str) -> FaultDecision:
        """Consume the fault (if any) that applies to one API request on ``path``."""
        with self.lock:
            faults = self.faults
            if not faults.matches(path):
                return FaultDecision()
            if faults.fail_next > 0:
                faults.fail_next -= 1
                return FaultDecision(fail_status=faults.fail_status)
            hang = 0.0
            if faults.timeout_next > 0:
                faults.timeout_next -= 1
                hang = faults.hang_seconds
            return FaultDecision(delay_seconds=faults.delay_seconds, hang_seconds=hang)

    # --- the request log ------------------------------------------------------------------

    def record_request(self, method: str, path: str) -> None:
        """Log one ``/v1`` request as it arrives, before faults, auth or validation: whatever
        reached "Stripe" counts, as it would against Stripe's rate limit."""
        with self.lock:
            self._received_total += 1
            self._received.append(
                {"seq": self._received_total, "method": method, "path": path, "at": self.now()}
            )

    def received(self, path_prefix: str | None = None, after: int = 0) -> dict[str, Any]:
        """``{"data": [...], "total": N}``: the logged requests numbered above ``after``,
        oldest first, optionally only those under ``path_prefix``; ``total`` counts every
        request since the reset (the number of the latest)."""
        with self.lock:
            data = [
                dict(entry)
                for entry in self._received
                if entry["seq"] > after
                and (path_prefix is None or entry["path"].startswith(path_prefix))
            ]
            return {"data": data, "total": self._received_total}
