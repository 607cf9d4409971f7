"""Settings per environment, chosen by ``SHOP_ENV``; every secret comes from the environment.

``SHOP_ENV`` unset means production, so a forgotten setting fails loudly instead of running a
debug shop. Development needs no setting at all: SQLite under ``instance/`` and the local Stripe
emulator.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

BASE_DIR = Path(__file__).resolve().parent

EMULATOR_API_BASE = "http://127.0.0.1:12111"
# The local emulator's public test credentials, not secrets (production refuses them).
EMULATOR_SECRET_KEY = "sk_test_emulator"  # noqa: S105  # nosec B105
EMULATOR_WEBHOOK_SECRET = "whsec_emulator"  # noqa: S105  # nosec B105


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _env_parsed(name: str, default: T, parse: Callable[[str], T], meaning: str) -> T:
    """``name`` from the environment, read by ``parse``; a value it cannot read stops the start."""
    value = _env(name)
    if value is None:
        return default
    try:
        return parse(value)
    except ValueError:
        raise RuntimeError(f"{name} must be {meaning}, got {value!r}") from None


def _env_int(name: str, default: int) -> int:
    return _env_parsed(name, default, int, "a whole number")


def _env_number(name: str, default: float) -> float:
    return _env_parsed(name, default, float, "a number of seconds")


def _env_flag(name: str, default: bool) -> bool:
    return _env_parsed(name, default, _on_or_off, "on or off (1/0)")


def _env_choice(name: str, default: str, choices: tuple[str, ...], *, upper: bool = False) -> str:
    def parse(value: str) -> str:
        value = value.upper() if upper else value.lower()
        if value not in choices:
            raise ValueError(value)
        return value

    return _env_parsed(name, default, parse, "one of " + ", ".join(choices))


def _on_or_off(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _networks(name: str, value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Comma-separated addresses or networks (``10.0.0.0/8``); a bad one stops the start."""
    networks = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise RuntimeError(
                f"{name} must list addresses or networks such as 10.0.0.0/8, got {entry!r}"
            ) from None
    return networks


def _database_url(default: str | None) -> str | None:
    url = _env("DATABASE_URL", default)
    if url and url.startswith(("postgres://", "postgresql://")):
        # psycopg 3 is the driver we ship; plain URLs from hosting providers mean it.
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Config:
    """Shared defaults. Subclasses read the environment when instantiated, not at import."""

    ENV_NAME = "base"
    DEBUG = False
    TESTING = False

    # Argon2id parameters (memory in KiB): RFC 9106's second recommended option.
    SHOP_PASSWORD_TIME_COST = 3
    SHOP_PASSWORD_MEMORY_COST = 65536
    SHOP_PASSWORD_PARALLELISM = 4

    LOG_FORMAT = "text"  # readable in a terminal; production writes JSON lines
    SQLALCHEMY_TRACK_MODIFICATIONS = False
    MAX_CONTENT_LENGTH = 16 * 1024 * 1024
    MAX_FORM_MEMORY_SIZE = 512 * 1024
    MAX_FORM_PARTS = 200
    WTF_CSRF_TIME_LIMIT = None
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_NAME = "smallbatch_session"
    REMEMBER_COOKIE_DURATION = timedelta(days=30)
    # Rate limits (policy in shop/limits.py and SECURITY.md). Set explicitly: Flask-Limiter
    # otherwise inherits "enabled" from whichever app it was bound to before in this process.
    RATELIMIT_ENABLED = True
    RATELIMIT_HEADERS_ENABLED = True
    RATELIMIT_STRATEGY = "moving-window"
    RATELIMIT_KEY_PREFIX = "smallbatch"
    # A Redis outage must not take logins and checkout down with it: count in memory meanwhile.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_SWALLOW_ERRORS = True

    def __init__(self) -> None:
        self.SECRET_KEY = _env("SECRET_KEY")
        self.SQLALCHEMY_DATABASE_URI = _database_url(None)
        self.STRIPE_SECRET_KEY = _env("STRIPE_SECRET_KEY")
        self.STRIPE_WEBHOOK_SECRET = _env("STRIPE_WEBHOOK_SECRET")
        self.STRIPE_API_BASE = _env("STRIPE_API_BASE")
        self.SHOP_BASE_URL = _env("SHOP_BASE_URL")
        self.SHOP_HOLD_MINUTES = _env_int("SHOP_HOLD_MINUTES", 10)
        # How long a draw's winner has to pay for what was drawn for them (shop/draws.py).
        self.SHOP_DRAW_PAY_HOURS = _env_int("SHOP_DRAW_PAY_HOURS", 24)
        # How long units freed for a waitlist stay held for the customer next in line.
        self.SHOP_WAITLIST_OFFER_MINUTES = _env_int("SHOP_WAITLIST_OFFER_MINUTES", 240)
        self.SHOP_SWEEP_SECONDS = _env_int("SHOP_SWEEP_SECONDS", 20)
        # Refused buy attempts counted in memory (no REDIS_URL) are stored this often by each
        # app process (shop/refusal_counts.py); the worker stores Redis's every sweep.
        self.SHOP_REFUSALS_FLUSH_SECONDS = _env_int("SHOP_REFUSALS_FLUSH_SECONDS", 30)
        # With REDIS_URL, each app process moves the refusals it counted into Redis this often
        # (one round trip for all of them), rather than one round trip per refusal.
        self.SHOP_REFUSALS_PUSH_SECONDS = _env_number("SHOP_REFUSALS_PUSH_SECONDS", 0.5)
        # Hoarding (SECURITY.md): units one account, and everyone on one client network, may
        # hold unpaid at once across a drop's batches; an account whose holds lapsed this many
        # times within the window holds nothing until the oldest leaves it. 0 turns one off.
        self.SHOP_DROP_HOLD_CAP_PER_ACCOUNT = _env_int("SHOP_DROP_HOLD_CAP_PER_ACCOUNT", 6)
        self.SHOP_DROP_HOLD_CAP_PER_NETWORK = _env_int("SHOP_DROP_HOLD_CAP_PER_NETWORK", 40)
        self.SHOP_HOLD_LAPSE_LIMIT = _env_int("SHOP_HOLD_LAPSE_LIMIT", 3)
        self.SHOP_HOLD_LAPSE_WINDOW_MINUTES = _env_int("SHOP_HOLD_LAPSE_WINDOW_MINUTES", 120)
        # The waiting room (shop/waiting_room.py, docs/ARCHITECTURE.md): turns handed out per
        # second (about 40 % of the buy's saturation rate on the slowest 2-core machine measured,
        # 234 holds/s in docs/PERFORMANCE.md, where buyers arriving at random stay fast), the
        # signed-in arrivals per second that open a room set to automatic, how long a called
        # visitor's slot waits for their hold, and how long their pass to buy lasts.
        self.SHOP_ROOM_ADMIT_PER_SECOND = _env_number("SHOP_ROOM_ADMIT_PER_SECOND", 100.0)
        self.SHOP_ROOM_AUTO_PER_SECOND = _env_int("SHOP_ROOM_AUTO_PER_SECOND", 100)
        self.SHOP_ROOM_TURN_SECONDS = _env_int("SHOP_ROOM_TURN_SECONDS", 60)
        self.SHOP_ROOM_PASS_MINUTES = _env_int("SHOP_ROOM_PASS_MINUTES", 10)
        # Argon2 work at once per app process (64 MiB each), and how long a request may wait
        # for a slot before it is told to try again (503), see shop/passwords.py.
        self.SHOP_PASSWORD_CONCURRENCY = _env_int("SHOP_PASSWORD_CONCURRENCY", 2)
        self.SHOP_PASSWORD_WAIT_SECONDS = _env_number("SHOP_PASSWORD_WAIT_SECONDS", 1.0)
        # Database connections per app process (PostgreSQL), see engine_options().
        self.SHOP_DB_POOL_SIZE = _env_int("SHOP_DB_POOL_SIZE", 5)
        self.SHOP_DB_POOL_OVERFLOW = _env_int("SHOP_DB_POOL_OVERFLOW", 10)
        self.SHOP_SHIPPING_COUNTRIES = [
            code.strip().upper()
            for code in (
                _env("SHOP_SHIPPING_COUNTRIES", "US,CA,GB,IE,DE,FR,NL,BE,AT,IT,ES,SE,DK") or ""
            ).split(",")
            if code.strip()
        ]
        # Batch images (shop/image_store.py): in the database, or in an S3-compatible bucket
        # (credentials from boto3's usual AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a role).
        # SHOP_UPLOAD_DIR is where uploads were kept as files before; `flask shop images
        # migrate` moves them into the store.
        self.SHOP_IMAGE_STORE = _env_choice("SHOP_IMAGE_STORE", "database", ("database", "s3"))
        self.SHOP_S3_BUCKET = _env("SHOP_S3_BUCKET")
        self.SHOP_S3_ENDPOINT_URL = _env("SHOP_S3_ENDPOINT_URL")
        self.SHOP_S3_REGION = _env("SHOP_S3_REGION")
        self.SHOP_S3_PREFIX = _env("SHOP_S3_PREFIX", "images/")
        self.SHOP_S3_CONNECT_TIMEOUT = _env_number("SHOP_S3_CONNECT_TIMEOUT", 2.0)
        self.SHOP_S3_READ_TIMEOUT = _env_number("SHOP_S3_READ_TIMEOUT", 10.0)
        if self.SHOP_IMAGE_STORE == "s3" and not self.SHOP_S3_BUCKET:
            raise RuntimeError(
                "SHOP_IMAGE_STORE=s3 needs SHOP_S3_BUCKET, the bucket images are kept in "
                "(and SHOP_S3_ENDPOINT_URL for a store other than Amazon S3)"
            )
        self.SHOP_UPLOAD_DIR = _env("SHOP_UPLOAD_DIR", str(BASE_DIR / "instance" / "uploads"))
        # The Ed25519 key certificates are signed with (shop/certificates.py): PEM in the
        # environment in production; elsewhere generated once into this file.
        self.SHOP_CERTIFICATE_KEY = _env("SHOP_CERTIFICATE_KEY")
        self.SHOP_CERTIFICATE_KEY_FILE = _env(
            "SHOP_CERTIFICATE_KEY_FILE", str(BASE_DIR / "instance" / "certificate_key.pem")
        )
        self.REDIS_URL = _env("REDIS_URL")
        self.RATELIMIT_STORAGE_URI = self.REDIS_URL or "memory://"
        # Several shops (or test runs) can share one Redis, each under its own prefix.
        self.RATELIMIT_KEY_PREFIX = _env("RATELIMIT_KEY_PREFIX", self.RATELIMIT_KEY_PREFIX)
        # How many reverse proxies (load balancers) we run in front of the app: their
        # X-Forwarded-For/-Proto are trusted that many hops deep, so limits see real clients.
        self.SHOP_PROXY_COUNT = _env_int("SHOP_PROXY_COUNT", 0)
        # Rate limits (shop/limits.py), e.g. SHOP_LIMIT_BUY_PER_IP="600/minute".
        for name, value in os.environ.items():
            if name.startswith("SHOP_LIMIT_") and value:
                setattr(self, name, value)
        self.STRIPE_CONNECT_TIMEOUT = _env_number("STRIPE_CONNECT_TIMEOUT", 2.0)
        self.STRIPE_READ_TIMEOUT = _env_number("STRIPE_READ_TIMEOUT", 5.0)
        # Email (shop/mail.py, docs/MESSAGES.md): the worker sends through SMTP_URL; without it
        # development delivers to a local mailbox read at /dev/mailbox.
        self.SMTP_URL = _env("SMTP_URL")
        self.MAIL_FROM = _env("MAIL_FROM")
        self.SHOP_SMTP_TIMEOUT = _env_number("SHOP_SMTP_TIMEOUT", 10.0)
        self.SHOP_MAILBOX_DIR = _env("SHOP_MAILBOX_DIR", str(BASE_DIR / "instance" / "mailbox"))
        self.SHOP_MAIL_MAX_ATTEMPTS = _env_int("SHOP_MAIL_MAX_ATTEMPTS", 8)
        self.SHOP_MAIL_POLL_SECONDS = _env_number("SHOP_MAIL_POLL_SECONDS", 2.0)
        # "The drop is live" goes out this many at a time, one batch per this many seconds.
        self.SHOP_NOTIFY_BATCH_SIZE = _env_int("SHOP_NOTIFY_BATCH_SIZE", 200)
        self.SHOP_NOTIFY_BATCH_SECONDS = _env_int("SHOP_NOTIFY_BATCH_SECONDS", 60)
        self.SHOP_REQUIRE_VERIFIED_EMAIL = _env_flag("SHOP_REQUIRE_VERIFIED_EMAIL", True)
        # /metrics (shop/metrics.py): with a token, only requests bearing it; without, only
        # clients in these networks.
        self.SHOP_METRICS_TOKEN = _env("SHOP_METRICS_TOKEN")
        self.SHOP_METRICS_NETWORKS = _networks(
            "SHOP_METRICS_NETWORKS", _env("SHOP_METRICS_NETWORKS", "127.0.0.0/8,::1/128") or ""
        )
        # Logs on standard error (shop/logs.py): JSON lines or plain text, and from which level.
        self.SHOP_LOG_FORMAT = _env_choice("SHOP_LOG_FORMAT", self.LOG_FORMAT, ("json", "text"))
        self.SHOP_LOG_LEVEL = _env_choice(
            "SHOP_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR"), upper=True
        )

    def engine_options(self) -> dict:
        """SQLAlchemy's pool for PostgreSQL: at most SHOP_DB_POOL_SIZE + SHOP_DB_POOL_OVERFLOW
        connections per app process; a request thread waits for one beyond that."""
        if not str(self.SQLALCHEMY_DATABASE_URI or "").startswith("postgresql"):
            return {}
        return {"pool_size": self.SHOP_DB_POOL_SIZE, "max_overflow": self.SHOP_DB_POOL_OVERFLOW}

    def missing(self) -> list[str]:
        """Names of required settings that are not set (production refuses to start)."""
        return []


class DevelopmentConfig(Config):
    ENV_NAME = "development"

    def __init__(self) -> None:
        super().__init__()
        self.SECRET_KEY = self.SECRET_KEY or "dev-only-secret-not-for-production"
        self.SQLALCHEMY_DATABASE_URI = self.SQLALCHEMY_DATABASE_URI or (
            f"sqlite:///{BASE_DIR / 'instance' / 'smallbatch.sqlite3'}"
        )
        if self.STRIPE_SECRET_KEY is None:
            # No Stripe account: talk to the local emulator that `flask shop serve` starts.
            self.STRIPE_SECRET_KEY = EMULATOR_SECRET_KEY
            self.STRIPE_API_BASE = self.STRIPE_API_BASE or EMULATOR_API_BASE
            self.STRIPE_WEBHOOK_SECRET = self.STRIPE_WEBHOOK_SECRET or EMULATOR_WEBHOOK_SECRET
        self.STRIPE_WEBHOOK_SECRET = self.STRIPE_WEBHOOK_SECRET or EMULATOR_WEBHOOK_SECRET
        self.SHOP_BASE_URL = self.SHOP_BASE_URL or "http://127.0.0.1:5000"
        # The demo lets anyone buy straight after registering; production asks for a verified
        # address first.
        self.SHOP_REQUIRE_VERIFIED_EMAIL = _env_flag("SHOP_REQUIRE_VERIFIED_EMAIL", False)


class TestingConfig(DevelopmentConfig):
    ENV_NAME = "testing"
    TESTING = True
    WTF_CSRF_ENABLED = True
    # Cheap hashing keeps the suite fast; production strength is asserted by a test.
    SHOP_PASSWORD_TIME_COST = 1
    SHOP_PASSWORD_MEMORY_COST = 1024
    SHOP_PASSWORD_PARALLELISM = 1

    def __init__(self) -> None:
        super().__init__()
        self.SQLALCHEMY_DATABASE_URI = _database_url("sqlite://")
        self.SHOP_BASE_URL = _env("SHOP_BASE_URL", "http://shop.test")
        self.RATELIMIT_ENABLED = _env("RATELIMIT_ENABLED", "0") == "1"
        # Tests read refusal counts from memory or flush them themselves, and find them in
        # Redis after the request that counted them: no background thread.
        self.SHOP_REFUSALS_FLUSH_SECONDS = _env_int("SHOP_REFUSALS_FLUSH_SECONDS", 0)
        self.SHOP_REFUSALS_PUSH_SECONDS = _env_number("SHOP_REFUSALS_PUSH_SECONDS", 0)


class ProductionConfig(Config):
    ENV_NAME = "production"
    LOG_FORMAT = "json"
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    PREFERRED_URL_SCHEME = "https"

    def missing(self) -> list[str]:
        required = {
            "SECRET_KEY": self.SECRET_KEY,
            "DATABASE_URL": self.SQLALCHEMY_DATABASE_URI,
            "STRIPE_SECRET_KEY": self.STRIPE_SECRET_KEY,
            "STRIPE_WEBHOOK_SECRET": self.STRIPE_WEBHOOK_SECRET,
            "SHOP_BASE_URL": self.SHOP_BASE_URL,
            "SMTP_URL": self.SMTP_URL,
            "SHOP_CERTIFICATE_KEY": self.SHOP_CERTIFICATE_KEY,
        }
        return [name for name, value in required.items() if not value]


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load(env_name: str | None = None) -> Config:
    """The settings object for ``env_name`` (default: ``SHOP_ENV``, unset means production)."""
    name = env_name or _env("SHOP_ENV", "production")
    try:
        return CONFIGS[name]()
    except KeyError:
        raise RuntimeError(f"SHOP_ENV={name!r} is not one of {', '.join(CONFIGS)}") from None
