"""Rate-limit policy: who may try what, how often. The numbers and their reasons are in SECURITY.md.

Counters live in ``RATELIMIT_STORAGE_URI`` (Redis from ``REDIS_URL`` in production, so every
app process shares them). Every limit is counted before the work it guards. Login limits count
*failed* attempts only, in short windows: each attempt reserves its place before the password
is checked and gives it back when the password was right (shop.attempts), so a burst of
parallel guesses can't slip past the count, a customer who types the right password is never
slowed down by their own success, and an attacker hammering someone's account can lock it for
at most an hour — never for a browser the customer has already logged in from (see
``known_device``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import time

from flask import Flask, current_app, make_response, request
from flask_limiter.constants import HeaderNames
from flask_limiter.util import get_remote_address
from flask_login import current_user
from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import parse_many

from shop import attempts, auth, clock, users
from shop.errors import InvalidInput, TooManyAttempts
from shop.extensions import limiter

# Login: failures only (401), so successes cost nothing; reserved before the password check.
LOGIN_PER_ACCOUNT_AND_IP = "10 per minute"
LOGIN_PER_ACCOUNT = "30 per hour"
LOGIN_PER_IP = "30 per minute; 300 per hour"
# Login, every attempt (right passwords too), per address: every login runs Argon2, so a script
# can't loop its own account's login; an office of 64 buyers logging in for a drop fits.
LOGIN_ATTEMPTS_PER_IP = "120 per minute; 1200 per hour"
# Changing the password (two Argon2 runs, and with a stolen session a way to guess the current
# password): every attempt, per customer and per address. (noqa/nosec: limits, not passwords.)
PASSWORD_CHANGE_PER_CUSTOMER = "5 per minute; 20 per day"  # noqa: S105  # nosec B105
PASSWORD_CHANGE_PER_IP = "30 per minute"  # noqa: S105  # nosec B105
# Choosing a new password from a reset link (Argon2 each): every attempt, per address.
SET_PASSWORD_PER_IP = "10 per minute; 50 per hour"  # noqa: S105  # nosec B105
# Registration, and apart from it accepting a maker's invitation (one Argon2 run each): every
# attempt, per address.
REGISTER_PER_IP = "20 per minute; 200 per hour"
# Buying: every attempt. Per customer stops a script; per IP lets a whole office of buyers
# behind one NAT (64 people retrying a few times each) through in the first minute of a drop.
BUY_PER_CUSTOMER = "10 per minute"
BUY_PER_IP = "300 per minute"
# Continuing to payment: every buy is followed by one (the redirect to Stripe), and a customer
# may come back to a held order from My orders; each asks Stripe, so a script is stopped here too.
PAY_PER_CUSTOMER = "20 per minute"
PAY_PER_IP = "600 per minute"
# The page Stripe sends a customer back to: one visit per purchase, a few reloads and "Check
# again" clicks. A paid or refunded order is answered from the database; only an order still
# waiting (or released) may ask Stripe, so a script is stopped here too.
RETURN_PER_CUSTOMER = "30 per minute"
RETURN_PER_IP = "600 per minute"
# Stripe is asked about one Checkout Session from the return page at most this often, however
# many reloads and processes: the rest of the window answers from the database.
RETURN_STRIPE_CHECK = "1 per 5 seconds"

# The waiting room's queue page reloads itself every 2 to 10 s; a script reloading faster is
# stopped (its place is kept). Per address, an office of buyers behind one NAT fits.
QUEUE_PER_CUSTOMER = "60 per minute"
QUEUE_PER_IP = "3000 per minute"

# Password reset links: every request, per address asked about and per client address. The
# answer never says whether an account exists; the per-address count covers any address.
RESET_LINK_PER_ADDRESS = "5 per hour"
RESET_LINK_PER_IP = "10 per minute; 50 per hour"
# Resending the confirmation link (the service also allows one a minute, five a day).
RESEND_VERIFICATION_PER_CUSTOMER = "5 per hour"

# "Notify me": every attempt per address (a visitor's each sends a confirmation email).
NOTIFY_PER_IP = "10 per minute; 60 per hour"

# Flask-Limiter settings ``buy_counted`` does not follow (limits besides the view's own, other
# header names or forms): with any of them set, Flask counts every buy itself.
_NOT_MIRRORED = (
    "RATELIMIT_APPLICATION",
    "RATELIMIT_DEFAULT",
    "RATELIMIT_META",
    "RATELIMIT_HEADER_LIMIT",
    "RATELIMIT_HEADER_REMAINING",
    "RATELIMIT_HEADER_RESET",
    "RATELIMIT_HEADER_RETRY_AFTER",
    "RATELIMIT_HEADER_RETRY_AFTER_VALUE",
)

DEVICE_COOKIE = "smallbatch_device"
DEVICE_DAYS = 90  # an entry (and the cookie) lasts this long after the login that made it
_DEVICE_ENTRIES = 8  # accounts x networks one browser remembers
_DEVICE_ENDPOINTS = (
    "account.login",
    "account.register",
    "account.password",
    "account.reset_password",
)


def client_ip() -> str:
    """The client's address (behind ``SHOP_PROXY_COUNT`` trusted proxies, see shop.security)."""
    return get_remote_address()


def account_key() -> str:
    """A keyed hash of the normalised email in the posted form: no addresses in Redis."""
    raw = request.form.get("email", "")
    try:
        email = users.normalise_email(raw)
    except InvalidInput:
        email = raw.strip().lower()
    secret = (current_app.config.get("SECRET_KEY") or "").encode()
    return hmac.new(secret, email.encode(), hashlib.sha256).hexdigest()[:32]


def account_and_ip_key() -> str:
    return f"{account_key()}@{client_ip()}"


def customer_key() -> str:
    """The signed-in customer, as the session claims (no user query on a flash crowd's buy)."""
    buyer = auth.buyer()
    return _customer(buyer.id) if buyer is not None else "anonymous"


def _customer(customer_id: int) -> str:
    return f"user:{customer_id}"


def setting(name: str, default: str) -> str:
    """The limit in setting ``SHOP_LIMIT_<name>``, else ``default``; operators tune numbers to
    their crowd without a code change."""
    return current_app.config.get(f"SHOP_LIMIT_{name}") or default


def policy(name: str, default: str):
    """:func:`setting`, read per request (for Flask-Limiter)."""
    return lambda: setting(name, default)


def anonymous() -> bool:
    return auth.buyer() is None


def login_failed(response) -> bool:
    return response.status_code == 401


def known_device() -> bool:
    """True when this browser logged in to the posted account, from this network, with the
    account's current password, within DEVICE_DAYS (a signed cookie, see :func:`device_entry`).

    Such a browser skips the per-account limit, so an attacker failing on purpose from many
    addresses cannot keep the real customer out; the per-address limits still apply to it.
    """
    entries = _device_entries()
    if not entries:
        return False  # no cookie (or only stale entries): no query
    try:
        email = users.normalise_email(request.form.get("email", ""))
    except InvalidInput:
        return False
    user = users.find_by_email(email)
    if user is None:
        return False
    return _device_digest(user.email, user.password_hash, client_ip()) in entries


def device_entry(email: str, password_hash: str, ip: str, issued_at: int) -> list:
    """One entry of the device cookie: an HMAC of the account's address, its password hash and
    the client's network, so it stops applying when the password changes (in any way) or the
    browser is on another network, and the time it was issued, so it expires."""
    return [_device_digest(email, password_hash, ip), issued_at]


def network_of(ip: str) -> str:
    """The network a device entry is bound to: the /24 of an IPv4 address, the /48 of an IPv6
    one (what one home or office line keeps across reconnections)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def hold_network(ip: str | None = None) -> str | None:
    """The client's network as the hold caps count it (SECURITY.md, "Hoarding"): an HMAC, keyed
    with SECRET_KEY, of the /24 of an IPv4 address or the /64 of an IPv6 one — one home or
    office line, never the address itself. None for an address that is not public (loopback,
    private, carrier-grade NAT): such an address reaches the shop only from inside its own
    network (a proxy with SHOP_PROXY_COUNT unset, a development machine), where it stands for
    everyone, so it is not capped."""
    try:
        address = ipaddress.ip_address(ip if ip is not None else client_ip())
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_global:
        return None
    prefix = 24 if address.version == 4 else 64
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    secret = (current_app.config.get("SECRET_KEY") or "").encode()
    return hmac.new(secret, f"hold-network\0{network}".encode(), hashlib.sha256).hexdigest()[:32]


def _device_digest(email: str, password_hash: str, ip: str) -> str:
    secret = (current_app.config.get("SECRET_KEY") or "").encode()
    message = "\0".join(("known-device", email, password_hash, network_of(ip)))
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()[:32]


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="smallbatch.device")


def _fresh_entries() -> list[list]:
    """The cookie's entries issued within DEVICE_DAYS; anything else (forged, stale, an older
    format) is dropped."""
    value = request.cookies.get(DEVICE_COOKIE)
    if not value:
        return []
    try:
        entries = _serializer().loads(value, max_age=DEVICE_DAYS * 86400)
    except BadSignature:
        return []
    if not isinstance(entries, list):
        return []
    oldest = clock.now().timestamp() - DEVICE_DAYS * 86400
    return [
        [digest, issued]
        for digest, issued in (e for e in entries if isinstance(e, list) and len(e) == 2)
        if isinstance(digest, str) and isinstance(issued, int) and issued > oldest
    ]


def _device_entries() -> set[str]:
    return {digest for digest, _ in _fresh_entries()}


def _remember_device(response):
    """After a successful login, registration or password change, mark this browser as known
    for the account, its current password and this network."""
    if (
        request.method == "POST"
        and request.endpoint in _DEVICE_ENDPOINTS
        and response.status_code in (302, 303)
        and current_user.is_authenticated
    ):
        entry = device_entry(
            current_user.email,
            current_user.password_hash,
            client_ip(),
            int(clock.now().timestamp()),
        )
        kept = [e for e in _fresh_entries() if e[0] != entry[0]]
        config = current_app.config
        response.set_cookie(
            DEVICE_COOKIE,
            _serializer().dumps([entry, *kept][:_DEVICE_ENTRIES]),
            max_age=DEVICE_DAYS * 86400,
            path="/account",
            secure=bool(config.get("SESSION_COOKIE_SECURE")),
            httponly=True,
            samesite="Lax",
        )
    return response


def login(view):
    """The login view's limits (POST only): every attempt per address (Flask-Limiter), then
    failed attempts per account and address, per account (not for a known device) and per
    address, each reserved before the password is checked and given back unless the answer is
    a failure (401)."""

    @functools.wraps(view)
    def counted(*args, **kwargs):
        if request.method != "POST":
            return view(*args, **kwargs)
        reservation = attempts.reserve(_login_failures())
        try:
            response = make_response(view(*args, **kwargs))
        except BaseException:
            reservation.give_back()
            raise
        if not login_failed(response):
            reservation.give_back()
        return response

    return limiter.limit(
        policy("LOGIN_ATTEMPTS_PER_IP", LOGIN_ATTEMPTS_PER_IP),
        key_func=client_ip,
        methods=["POST"],
        scope="login-attempts-ip",
    )(counted)


def _login_failures() -> list[attempts.Counted]:
    counted = [
        attempts.Counted(
            "login-account-ip",
            account_and_ip_key(),
            setting("LOGIN_PER_ACCOUNT_AND_IP", LOGIN_PER_ACCOUNT_AND_IP),
        ),
        attempts.Counted("login-ip", client_ip(), setting("LOGIN_PER_IP", LOGIN_PER_IP)),
    ]
    if not known_device():
        counted.append(
            attempts.Counted(
                "login-account", account_key(), setting("LOGIN_PER_ACCOUNT", LOGIN_PER_ACCOUNT)
            )
        )
    return counted


def register(view):
    """The limits of registration and of accepting an invitation (POST only, every attempt)."""
    return limiter.limit(
        policy("REGISTER_PER_IP", REGISTER_PER_IP),
        key_func=client_ip,
        methods=["POST"],
        scope="register",
    )(view)


def password_reset(view):
    """ "Forgot your password?" (POST only, every attempt): per address and per IP."""
    for decorator in (
        limiter.limit(
            policy("RESET_LINK_PER_ADDRESS", RESET_LINK_PER_ADDRESS),
            key_func=account_key,
            methods=["POST"],
            scope="reset-account",
        ),
        limiter.limit(
            policy("RESET_LINK_PER_IP", RESET_LINK_PER_IP),
            key_func=client_ip,
            methods=["POST"],
            scope="reset-ip",
        ),
    ):
        view = decorator(view)
    return view


def change_password(view):
    """Changing the password (POST only, every attempt): per customer and per address."""
    return _per_customer_and_ip(
        view,
        "PASSWORD_CHANGE",
        (PASSWORD_CHANGE_PER_CUSTOMER, PASSWORD_CHANGE_PER_IP),
        methods=["POST"],
    )


def set_password(view):
    """Choosing a new password from a reset link (POST only, every attempt), per address."""
    return limiter.limit(
        policy("SET_PASSWORD_PER_IP", SET_PASSWORD_PER_IP),
        key_func=client_ip,
        methods=["POST"],
        scope="set-password",
    )(view)


def resend_verification(view):
    return limiter.limit(
        policy("RESEND_VERIFICATION_PER_CUSTOMER", RESEND_VERIFICATION_PER_CUSTOMER),
        key_func=customer_key,
        methods=["POST"],
        scope="resend-verification",
    )(view)


def notify(view):
    return limiter.limit(
        policy("NOTIFY_PER_IP", NOTIFY_PER_IP), key_func=client_ip, methods=["POST"], scope="notify"
    )(view)


_BUY = ("BUY", (BUY_PER_CUSTOMER, BUY_PER_IP))


def buy(view):
    """Limits for buying (POST only, every attempt). Anonymous visitors are sent to log in, so
    only the per-address limit applies to them."""
    return _per_customer_and_ip(view, *_BUY, methods=["POST"])


def buy_counted(customer_id: int, ip: str) -> list[tuple[str, str]] | None:
    """Count a buy answered outside a request (``shop.fast_path``'s sold-out refusal) where
    ``buy``'s decorators count every buy — Flask-Limiter's own limiter and storage, under the
    keys it builds for ``checkout.buy`` (prefix, key, endpoint and scope), in its order — so
    the two answers share one count. Returns the rate-limit headers Flask-Limiter would add;
    None when a limit is reached or anything else than ``buy``'s own limits may apply (Flask
    then answers, the 429 too). Empty while rate limiting is off."""
    config = current_app.config
    if not limiter.enabled or not config.get("RATELIMIT_ENABLED", True):
        return []
    if any(config.get(name) for name in _NOT_MIRRORED):
        return None
    # As Flask-Limiter's init_app settled them: the first app's, in a process that makes
    # several (tests). Private names: the parity test (tests/integration/
    # test_sold_out_fast_path.py) fails the day an upgrade moves them.
    prefix, headers = limiter._key_prefix, limiter._headers_enabled
    keys = (_customer(customer_id), ip)
    counted = sorted(  # as Flask-Limiter orders a view's limits: shortest window first
        (
            (item, [*([prefix] if prefix else []), key, f"checkout.buy:{scope}"])
            for key, (name, default, scope) in zip(keys, _pair(*_BUY), strict=True)
            for item in parse_many(setting(name, default))
        ),
        key=lambda limit: limit[0],
    )
    backend = limiter.limiter
    for item, args in counted:
        if not backend.hit(item, *args):
            return None
    if not headers:
        return []
    item, args = counted[0]  # the header's limit: none was reached, so the first
    reset_time, remaining = backend.get_window_stats(item, *args)
    reset_at = int(reset_time + 1)
    return [
        (HeaderNames.LIMIT.value, str(item.amount)),
        (HeaderNames.REMAINING.value, str(remaining)),
        (HeaderNames.RESET.value, str(reset_at)),
        (HeaderNames.RETRY_AFTER.value, str(int(reset_at - time.time()))),
    ]


def pay(view):
    """Limits for continuing to payment (every attempt, GET after a buy or POST from My orders)."""
    return _per_customer_and_ip(view, "PAY", (PAY_PER_CUSTOMER, PAY_PER_IP), methods=None)


def checkout_return(view):
    """Limits for the page Stripe returns the customer to (every attempt, GET)."""
    return _per_customer_and_ip(view, "RETURN", (RETURN_PER_CUSTOMER, RETURN_PER_IP), methods=None)


def queue(view):
    """Limits for the waiting room's queue page (every request): per customer and per address."""
    return _per_customer_and_ip(view, "QUEUE", (QUEUE_PER_CUSTOMER, QUEUE_PER_IP), methods=None)


def stripe_check_due(session_id: str) -> bool:
    """True when the return page may ask Stripe about ``session_id`` now: the first hit in each
    ``RETURN_STRIPE_CHECK`` window, counted before the call in the rate-limit storage (Redis in
    production: one window for every process). Always True while rate limiting is off."""
    check = attempts.Counted(
        "return-stripe-check", session_id, setting("RETURN_STRIPE_CHECK", RETURN_STRIPE_CHECK)
    )
    try:
        attempts.reserve([check])
    except TooManyAttempts:
        return False
    return True


def _pair(name: str, defaults: tuple[str, str]) -> tuple[tuple[str, str, str], ...]:
    """The per-customer and the per-address limit of ``name``: each's setting, default and
    Flask-Limiter scope (``_per_customer_and_ip`` decorates with them, ``buy_counted`` counts
    on them)."""
    per_customer, per_ip = defaults
    scope = name.lower()
    return (
        (f"{name}_PER_CUSTOMER", per_customer, f"{scope}-customer"),
        (f"{name}_PER_IP", per_ip, f"{scope}-ip"),
    )


def _per_customer_and_ip(view, name: str, defaults: tuple[str, str], *, methods):
    (customer, per_customer, customer_scope), (ip, per_ip, ip_scope) = _pair(name, defaults)
    for decorator in (
        limiter.limit(
            policy(customer, per_customer),
            key_func=customer_key,
            methods=methods,
            exempt_when=anonymous,
            scope=customer_scope,
        ),
        limiter.limit(policy(ip, per_ip), key_func=client_ip, methods=methods, scope=ip_scope),
    ):
        view = decorator(view)
    return view


def init_app(app: Flask) -> None:
    """Hooks the policy needs besides the decorators (called from shop.security.register)."""
    app.after_request(_remember_device)
    if app.config.get("ENV_NAME") == "production" and not app.config.get("REDIS_URL"):
        app.logger.warning(
            "REDIS_URL is not set: rate limits are counted per process, so each of N app "
            "processes allows N times the documented limits. Set REDIS_URL in production."
        )
