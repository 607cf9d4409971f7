"""Helpers for the security tests: forms with their CSRF token, logins, a production app."""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask

import config as settings
from shop import create_app
from shop.extensions import limiter
from testkit.factories import PASSWORD
from tests.support.clients import FreshContextClient, csrf_token_in

PRODUCTION_BASE_URL = "https://shop.example.com"


def form_token(client, path: str = "/account/login") -> str:
    """The CSRF token a person would find in the form at ``path``."""
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return csrf_token_in(response.get_data(as_text=True))


def log_in(
    client,
    email: str,
    password: str = PASSWORD,
    *,
    remember: bool = False,
    next: str | None = None,
    ip: str | None = None,
    headers: dict | None = None,
):
    data = {"csrf_token": form_token(client), "email": email, "password": password}
    if remember:
        data["remember"] = "y"
    if next is not None:
        data["next"] = next
    environ = {"REMOTE_ADDR": ip} if ip else {}
    return client.post("/account/login", data=data, environ_base=environ, headers=headers or {})


def register(client, display_name: str, email: str, password: str, **extra: str):
    """Submit the registration form as a person would (``extra``: fields it does not offer)."""
    fields = {"display_name": display_name, "email": email, "password": password, **extra}
    token = form_token(client, "/account/register")
    return client.post("/account/register", data={"csrf_token": token, **fields})


def change_password(client, current: str, new: str):
    """Submit the password form, the new password typed twice."""
    fields = {"current_password": current, "new_password": new, "confirm_password": new}
    token = form_token(client, "/account/password")
    return client.post("/account/password", data={"csrf_token": token, **fields})


def log_out(client):
    return client.post("/account/logout", data={"csrf_token": form_token(client, "/account/")})


def is_logged_in(client) -> bool:
    response = client.get("/account/")
    return response.status_code == 200


def close_limiter_storage() -> None:
    client = getattr(limiter.storage, "storage", None)
    if client is not None and hasattr(client, "connection_pool"):
        client.connection_pool.disconnect()


# One Ed25519 key for every production environment the tests build (as one line, as an
# environment variable may hold it).
CERTIFICATE_KEY = (
    Ed25519PrivateKey.generate()
    .private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    .decode()
    .replace("\n", "\\n")
)


def production_env(monkeypatch, database_url: str, **overrides: str | None) -> None:
    """A complete, valid production environment; ``None`` in overrides unsets a variable."""
    values: dict[str, str | None] = {
        "SHOP_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": database_url,
        "STRIPE_SECRET_KEY": "sk_test_" + secrets.token_hex(12),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(12),
        "SHOP_BASE_URL": PRODUCTION_BASE_URL,
        "SMTP_URL": "smtp://mail.internal:25",
        "SHOP_CERTIFICATE_KEY": CERTIFICATE_KEY,
        "STRIPE_API_BASE": None,
        "REDIS_URL": None,
        "FLASK_DEBUG": None,
        "SHOP_PROXY_COUNT": None,
    }
    values.update(overrides)
    for name, value in values.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def production_app(monkeypatch, database_url: str, **overrides: str | None) -> Flask:
    production_env(monkeypatch, database_url, **overrides)
    app = create_app(settings.load())
    app.test_client_class = FreshContextClient
    return app
