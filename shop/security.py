"""Security defaults applied to every response and checked at start-up."""

from __future__ import annotations

import hmac
import time
from urllib.parse import urlsplit

from flask import Flask, g, request
from flask.helpers import get_debug_flag
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import same_origin
from itsdangerous import BadData, BadSignature, URLSafeTimedSerializer
from werkzeug.exceptions import SecurityError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wsgi import get_host

from config import EMULATOR_SECRET_KEY
from shop import certificates, limits, mail, page_cache

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self' {stripe}",
    ]
)

MIN_SECRET_KEY_LENGTH = 32


def check_production_settings(app: Flask) -> None:
    """Refuse weak or contradictory production settings, naming what to fix."""
    if app.config.get("ENV_NAME") != "production":
        return
    problems = []
    secret = app.config.get("SECRET_KEY") or ""
    if len(secret) < MIN_SECRET_KEY_LENGTH or len(set(secret)) < 10:
        problems.append(
            f"SECRET_KEY must be a random string of at least {MIN_SECRET_KEY_LENGTH} characters"
        )
    key = app.config.get("STRIPE_SECRET_KEY") or ""
    if key == EMULATOR_SECRET_KEY or not key.startswith(("sk_live_", "sk_test_", "rk_")):
        problems.append("STRIPE_SECRET_KEY must be a real Stripe secret key")
    if not (app.config.get("STRIPE_WEBHOOK_SECRET") or "").startswith("whsec_"):
        problems.append("STRIPE_WEBHOOK_SECRET must be the endpoint's whsec_ secret")
    api_base = app.config.get("STRIPE_API_BASE")
    if api_base and key.startswith("sk_live_"):
        problems.append(
            "STRIPE_API_BASE must not be set with a live key (it points at an emulator)"
        )
    base_url = urlsplit(app.config.get("SHOP_BASE_URL") or "")
    if base_url.scheme != "https" or not base_url.hostname:
        problems.append("SHOP_BASE_URL must be the shop's https:// address")
    if app.config.get("SHOP_CERTIFICATE_KEY"):
        try:
            certificates.private_key_from_pem(app.config["SHOP_CERTIFICATE_KEY"])
        except certificates.CertificateKeyError as error:
            problems.append(str(error))
    if app.config.get("SMTP_URL"):
        try:
            mail.SmtpTransport.from_url(app.config["SMTP_URL"], timeout=1)
        except mail.MailSettingError as error:
            problems.append(str(error))
    token = app.config.get("SHOP_METRICS_TOKEN")
    if token and (len(token) < MIN_SECRET_KEY_LENGTH or len(set(token)) < 10 or " " in token):
        problems.append(
            f"SHOP_METRICS_TOKEN must be a random string of at least {MIN_SECRET_KEY_LENGTH} "
            "characters without spaces (or unset it: /metrics then answers only "
            "SHOP_METRICS_NETWORKS)"
        )
    if app.config.get("DEBUG") or get_debug_flag():
        # `flask run` turns FLASK_DEBUG=1 into the Werkzeug debugger after the app is built,
        # so the variable itself is refused, not just the setting.
        problems.append("DEBUG must be off in production (unset FLASK_DEBUG)")
    if problems:
        raise RuntimeError("Small Batch (production) cannot start: " + "; ".join(problems))


_KEPT_PER_PROCESS = 4096  # verified cookies, and signed CSRF tokens, kept per process


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed session cookies, with the signing serializer built once per set of keys
    rather than on every request (building it costs a third of verifying the cookie)."""

    def __init__(self) -> None:
        self._signing: tuple[tuple, URLSafeTimedSerializer | None] | None = None
        # Cookies ``read`` verified, by value, until they expire: (serializer, age limit,
        # session), so a crowd reloading a page pays for each cookie's signature and JSON once.
        self._read = page_cache.MemoryStore(limit=_KEPT_PER_PROCESS)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._signing
        if cached is None or cached[0] != keys:
            cached = self._signing = (keys, super().get_signing_serializer(app))
        return cached[1]

    def read(self, app: Flask, value: str | None) -> dict | None:
        """The session a cookie carries, checked as ``open_session`` checks it (same
        serializer, same age limit), for a reader outside a request (``shop.fast_path``);
        None for a missing, forged or expired cookie. Read-only: the same dict is returned
        for the same cookie until it expires or the keys change."""
        serializer = self.get_signing_serializer(app)
        if serializer is None or not value:
            return None
        max_age = int(app.permanent_session_lifetime.total_seconds())
        found = self._read.get(value)
        if found is not None and found[:2] == (serializer, max_age):
            return found[2]
        try:
            data, signed_at = serializer.loads(value, max_age=max_age, return_timestamp=True)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        left = signed_at.timestamp() + max_age - time.time()
        self._read.set(value, (serializer, max_age, data), None, left)
        return data


CSRF_REUSE_SECONDS = 60  # a token signed this recently is handed out again for the same session


def csrf_token(app: Flask, raw: str) -> str:
    """The signed CSRF token Flask-WTF's ``generate_csrf`` makes of the session's raw one (same
    key, salt and signer; Flask-WTF checks it on the form's way back), for a page answered
    outside a request (``shop.fast_path``). A session reloading the page within
    ``CSRF_REUSE_SECONDS`` gets the token it got last (signing compresses and hashes: a crowd's
    reloads need not pay for that each time); a token is only ever its own session's."""
    serializer, signed = _csrf_signer(app)
    token = signed.get(raw)
    if token is None:
        token = serializer.dumps(raw)
        signed.set(raw, token, None, CSRF_REUSE_SECONDS)
    return token


def csrf_accepted(app: Flask, raw: str, token: str | None, environ: dict) -> bool:
    """Whether Flask-WTF's ``CSRFProtect`` takes the form's ``token`` for the session whose
    raw token is ``raw``: signed by the same signer for that raw token (within
    ``WTF_CSRF_TIME_LIMIT``) and, over HTTPS with ``WTF_CSRF_SSL_STRICT``, posted from a page
    of this host (its Referer). For a form answered outside a request (``shop.fast_path``),
    which then answers only a refusal: False never refuses anyone, it hands the request to
    Flask-WTF, whose 400 is the visitor's answer."""
    config = app.config
    if not config.get("WTF_CSRF_ENABLED", True):
        return True
    if not token:
        return False
    serializer, signed = _csrf_signer(app)
    if signed.get(raw) != token:  # not the token signed for this session a moment ago
        try:
            loaded = serializer.loads(token, max_age=config.get("WTF_CSRF_TIME_LIMIT", 3600))
        except BadData:
            return False
        if not isinstance(loaded, str) or not hmac.compare_digest(loaded, raw):
            return False
    if environ.get("wsgi.url_scheme") != "https" or not config.get("WTF_CSRF_SSL_STRICT", True):
        return True
    try:
        host = get_host(environ, config.get("TRUSTED_HOSTS"))
    except SecurityError:
        return False
    referrer = environ.get("HTTP_REFERER")
    return bool(referrer) and same_origin(referrer, f"https://{host}/")


def _csrf_signer(app: Flask) -> tuple[URLSafeTimedSerializer, page_cache.MemoryStore]:
    """Flask-WTF's signer of CSRF tokens (its key and salt), and the tokens it signed lately
    by raw token, kept in the app's config until the key changes."""
    config = app.config
    secret = config.get("WTF_CSRF_SECRET_KEY") or app.secret_key
    signer = config.get("_SHOP_CSRF_SIGNER")
    if signer is None or signer[0] != secret:
        signer = config["_SHOP_CSRF_SIGNER"] = (
            secret,
            URLSafeTimedSerializer(secret, salt="wtf-csrf-token"),
            page_cache.MemoryStore(limit=_KEPT_PER_PROCESS),
        )
    return signer[1], signer[2]


def register(app: Flask) -> None:
    app.session_interface = SessionCookies()
    proxies = int(app.config.get("SHOP_PROXY_COUNT") or 0)
    if proxies:
        # The client's address and scheme from the proxies we run; never their Host header.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    base = urlsplit(app.config.get("SHOP_BASE_URL") or "")
    if base.hostname and not app.config.get("TRUSTED_HOSTS"):
        hosts = [base.hostname]
        if app.config.get("ENV_NAME") != "production":
            hosts += ["127.0.0.1", "localhost"]
        app.config["TRUSTED_HOSTS"] = hosts
    stripe_origin = _origin(app.config.get("STRIPE_API_BASE")) or "https://checkout.stripe.com"
    csp = CSP.format(stripe=stripe_origin)
    hsts = app.config.get("ENV_NAME") == "production"

    # First of all hooks: CSRFProtect reads the form in its own before_request.
    app.before_request_funcs.setdefault(None, []).insert(0, _cap_urlencoded_body)
    limits.init_app(app)

    warned = []

    @app.before_request
    def _warn_of_an_uncounted_proxy() -> None:
        if not proxies and not warned and "X-Forwarded-For" in request.headers:
            warned.append(True)
            app.logger.warning(
                "Requests arrive through a proxy but SHOP_PROXY_COUNT is 0: every client "
                "shares the proxy's address and its rate limits. Set SHOP_PROXY_COUNT."
            )

    # The same on every response and set by no view, so added in one go (this runs on every
    # request of a flash crowd); a view may bring its own CSP or Cache-Control.
    always = [
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
        ("X-Frame-Options", "DENY"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if hsts:
        always.append(("Strict-Transport-Security", "max-age=63072000; includeSubDomains"))
    always_with_csp = [("Content-Security-Policy", csp), *always]

    @app.after_request
    def _headers(response):
        headers = response.headers
        headers.extend(always if "Content-Security-Policy" in headers else always_with_csp)
        request_id = g.get("request_id")  # set first of all by shop.logs
        if request_id:
            headers.add("X-Request-Id", request_id)
        if "Cache-Control" not in headers and response.mimetype == "text/html":
            headers.add("Cache-Control", "no-store")
        # No Server header from the app; gunicorn adds its own, version-free (SECURITY.md).
        return response


def _cap_urlencoded_body() -> None:
    """Werkzeug enforces MAX_FORM_MEMORY_SIZE and MAX_FORM_PARTS on multipart bodies only; a
    urlencoded form is read whole, so its whole body gets the per-field cap (413 above it)."""
    if request.mimetype == "application/x-www-form-urlencoded":
        cap = request.max_form_memory_size
        if cap is not None:
            current = request.max_content_length
            request.max_content_length = cap if current is None else min(cap, current)


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None
