"""The shop's emails, one function per kind. Each renders its message and adds it to the outbox
in the caller's transaction, so it is sent if and only if its cause commits."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from sqlalchemy import func, select

from shop import certificates, mail, money, outbox, shipping
from shop.extensions import db
from shop.models import (
    Drop,
    DropSubscription,
    Message,
    Order,
    UnitRefund,
    User,
    WaitlistPlace,
)

VERIFY_EMAIL = "verify_email"
RESET_LINK = "password_reset"
ORDER_PAID = "order_paid"
ORDER_SHIPPED = "order_shipped"
ORDER_REFUNDED = "order_refunded"
UNITS_REFUNDED = "units_refunded"
CONFIRM_SUBSCRIPTION = "confirm_subscription"
DROP_LIVE = "drop_live"
DRAW_WON = "draw_won"
DRAW_NOT_DRAWN = "draw_not_drawn"
WAITLIST_OFFER = "waitlist_offer"
WAITLIST_CLOSED = "waitlist_closed"

# Tracking pages of carriers makers name most; any other carrier gets its number in the text.
TRACKING_URLS = {
    "ups": "https://www.ups.com/track?tracknum={}",
    "usps": "https://tools.usps.com/go/TrackConfirmAction?tLabels={}",
    "fedex": "https://www.fedex.com/fedextrack/?trknbr={}",
    "dhl": "https://www.dhl.com/global-en/home/tracking/tracking-parcel.html?tracking-id={}",
    "royal mail": "https://www.royalmail.com/track-your-item#/tracking-results/{}",
    "canada post": "https://www.canadapost-postescanada.ca/track-reperage/en#/details/{}",
}


def sent_since(user: User, kind: str, since: datetime) -> int:
    """How many messages of ``kind`` were written for ``user`` since ``since`` (throttles)."""
    return (
        db.session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.user_id == user.id, Message.kind == kind, Message.created_at >= since)
        )
        or 0
    )


def verify_email(user: User, *, token: str) -> None:
    link = mail.link("account.verify_email", token=token)
    rendered = mail.render(VERIFY_EMAIL, subject="Confirm your email address", user=user, link=link)
    outbox.enqueue(VERIFY_EMAIL, recipient=user.email, rendered=rendered, user=user)


def password_reset(user: User, *, token: str) -> None:
    link = mail.link("account.reset_password", token=token)
    rendered = mail.render(
        RESET_LINK, subject="Reset your Small Batch password", user=user, link=link
    )
    outbox.enqueue(RESET_LINK, recipient=user.email, rendered=rendered, user=user)


def _order_context(order: Order) -> dict:
    batch = order.batch
    return {
        "order": order,
        "batch": batch,
        "customer": order.customer,
        "units": [
            {
                "serial": unit.serial,
                "certificate": certificates.link_for(unit),
            }
            for unit in order.units
        ],
        "amount": money.format_money(order.amount_total or order.amount, order.currency),
        "breakdown": _breakdown(order),
        "order_url": mail.link("account.order", public_id=order.public_id),
    }


def _breakdown(order: Order) -> list[tuple[str, str]]:
    """What Checkout added to the goods (shipping, tax, a discount), when it added anything."""
    extras = [
        (order.shipping_rate_name or "Shipping", order.shipping_amount),
        ("Tax", order.tax_amount),
        (
            "Discount" + (f" ({order.promotion_code})" if order.promotion_code else ""),
            -order.discount_amount,
        ),
    ]
    if not any(value for _label, value in extras):
        return []
    lines = [(order.batch.units_of(order.quantity), order.amount)]
    lines += [(label, value) for label, value in extras if value]
    return [
        (label, ("-" if value < 0 else "") + money.format_money(abs(value), order.currency))
        for label, value in lines
    ]


def _shipping_lines(address: dict | None) -> list[str]:
    return shipping.shipping_lines(address)


def _enqueue_for_order(kind: str, order: Order, about: str, **context: object) -> None:
    """One message to the order's customer, once per order; the subject names the batch."""
    batch = order.batch
    subject = f"{about}: {batch.product.name} No. {batch.number}"
    rendered = mail.render(kind, subject=subject, **_order_context(order), **context)
    outbox.enqueue(
        kind,
        recipient=order.customer.email,
        rendered=rendered,
        order=order,
        user=order.customer,
        dedupe_key=f"{kind}:{order.id}",
    )


def load_for_receipt(order: Order) -> None:
    """Read now what :func:`order_paid` will read (the batch, its product, the customer), so
    the receipt rendered after ``inventory.confirm`` asks the database only for the units."""
    _ = (order.batch.product, order.customer)


def order_paid(order: Order) -> None:
    """The receipt: the batch, "No. k of N" for every unit with its certificate, the amount
    and where it ships. Once per order."""
    _enqueue_for_order(ORDER_PAID, order, "Your order", shipping=_shipping_lines(order.shipping))


def tracking_url(carrier: str | None, number: str | None) -> str | None:
    template = TRACKING_URLS.get(" ".join((carrier or "").lower().split()))
    return template.format(quote(number, safe="")) if template and number else None


def order_shipped(order: Order) -> None:
    """Carrier and tracking, once per order (the first time it is marked shipped)."""
    _enqueue_for_order(
        ORDER_SHIPPED,
        order,
        "On its way",
        tracking_url=tracking_url(order.carrier, order.tracking_number),
        shipping=_shipping_lines(order.shipping),
    )


def order_refunded(order: Order) -> None:
    """Amount, reason, and what happens to the numbers: they stay retired, never resold."""
    _enqueue_for_order(ORDER_REFUNDED, order, "Refunded")


def units_refunded(refund: UnitRefund) -> None:
    """Which numbers were refunded (retired) and for how much; the rest stay the customer's.
    Once per unit refund."""
    order = refund.order
    batch = order.batch
    rendered = mail.render(
        UNITS_REFUNDED,
        subject=f"Refunded: {batch.units_of(refund.quantity)} of {batch.product.name} "
        f"No. {batch.number}",
        **{
            **_order_context(order),
            "amount": money.format_money(refund.amount, refund.currency),
        },
        refund=refund,
        retired=[unit.serial for unit in refund.units],
        kept=[unit.serial for unit in order.valid_units],
    )
    outbox.enqueue(
        UNITS_REFUNDED,
        recipient=order.customer.email,
        rendered=rendered,
        order=order,
        user=order.customer,
        dedupe_key=f"{UNITS_REFUNDED}:{refund.id}",
    )


def confirm_subscription(subscription: DropSubscription, drop: Drop) -> None:
    """Double opt-in for a visitor's address: once per (drop, address)."""
    rendered = mail.render(
        CONFIRM_SUBSCRIPTION,
        subject=f"Confirm: tell me when {drop.title} opens",
        drop=drop,
        link=mail.link("notify.confirm", token=subscription.token),
        drop_url=mail.link("storefront.drop", slug=drop.slug),
    )
    outbox.enqueue(
        CONFIRM_SUBSCRIPTION,
        recipient=subscription.email,
        rendered=rendered,
        user=None,
        dedupe_key=f"{CONFIRM_SUBSCRIPTION}:{subscription.id}",
    )


def drop_live(
    drop: Drop, subscription: DropSubscription, *, dedupe_key: str, available_at: datetime
) -> None:
    """ "The drop is live", with RFC 8058 one-click unsubscribe (header and link)."""
    unsubscribe = mail.link("notify.unsubscribe", token=subscription.token)
    rendered = mail.render(
        DROP_LIVE,
        subject=f"{drop.title} is live",
        drop=drop,
        drop_url=mail.link("storefront.drop", slug=drop.slug),
        unsubscribe_url=unsubscribe,
    )
    outbox.enqueue(
        DROP_LIVE,
        recipient=subscription.email,
        rendered=rendered,
        dedupe_key=dedupe_key,
        available_at=available_at,
        headers={
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


def draw_won(entry, order: Order, *, passed_on: bool) -> None:
    """You were drawn (or, ``passed_on``, units a winner left unpaid came to you): what is
    held, until when, and the link to pay. Once per entry."""
    batch = order.batch
    about = "Units came free for you" if passed_on else "You were drawn"
    _enqueue_for_order(
        DRAW_WON,
        order,
        about,
        entry=entry,
        passed_on=passed_on,
        draw_url=mail.link("storefront.draw", slug=batch.drop.slug),
    )


def draw_not_drawn(entry) -> None:
    """Not drawn this time, your place in the draw order, and how to check the draw."""
    batch = entry.batch
    drop = batch.drop
    rendered = mail.render(
        DRAW_NOT_DRAWN,
        subject=f"The draw for {batch.product.name} No. {batch.number}",
        entry=entry,
        batch=batch,
        drop=drop,
        customer=entry.customer,
        draw_url=mail.link("storefront.draw", slug=drop.slug, entry=entry.public_id),
    )
    outbox.enqueue(
        DRAW_NOT_DRAWN,
        recipient=entry.customer.email,
        rendered=rendered,
        user=entry.customer,
        dedupe_key=f"{DRAW_NOT_DRAWN}:{entry.id}",
    )


def waitlist_offer(place: WaitlistPlace, order: Order) -> None:
    """Units came free and are held for the customer next in line: how many, the price, until
    when, and the offer's link (theirs alone). Once per offer."""
    _enqueue_for_order(
        WAITLIST_OFFER,
        order,
        "Held for you from the waitlist",
        offer_url=mail.link("storefront.waitlist_offer", public_id=place.public_id),
    )


def waitlist_closed(place: WaitlistPlace, *, sold_out: bool) -> None:
    """The line for a batch closed before the customer's turn: every unit is paid for, or the
    drop closed. Once per place."""
    batch = place.batch
    rendered = mail.render(
        WAITLIST_CLOSED,
        subject=f"The waitlist closed: {batch.product.name} No. {batch.number}",
        batch=batch,
        customer=place.customer,
        sold_out=sold_out,
        drop_url=mail.link("storefront.drop", slug=batch.drop.slug) if batch.drop else None,
    )
    outbox.enqueue(
        WAITLIST_CLOSED,
        recipient=place.customer.email,
        rendered=rendered,
        user=place.customer,
        dedupe_key=f"{WAITLIST_CLOSED}:{place.id}",
    )


MAKER_INVITATION = "maker_invitation"


def maker_invitation(invitation, *, inviter: User, link: str) -> None:
    rendered = mail.render(
        MAKER_INVITATION,
        subject="You're invited to sell on Small Batch",
        invitation=invitation,
        inviter=inviter,
        link=link,
    )
    outbox.enqueue(MAKER_INVITATION, recipient=invitation.email, rendered=rendered)
