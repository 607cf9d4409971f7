"""Signed, expiring tokens for emailed links (verify an address, reset a password, confirm a
subscription). Signed with SECRET_KEY and a salt per purpose, so a token made for one purpose
is worthless for another; the time is checked against the shop's clock."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from shop import clock
from shop.errors import LinkInvalid


class LinkExpired(LinkInvalid):
    pass


def serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"smallbatch.{purpose}")


def sign(purpose: str, payload: dict) -> str:
    return serializer(purpose).dumps(payload)


def read(purpose: str, token: str, *, max_age: timedelta, now: datetime, expired: str) -> dict:
    """The payload of a token made by :func:`sign` for ``purpose``; LinkExpired (with the
    ``expired`` message) past ``max_age``, LinkInvalid when it was not made by us."""
    if not token or len(token) > 1000:
        raise LinkInvalid()
    try:
        payload, signed_at = serializer(purpose).loads(token, return_timestamp=True)
    except BadSignature:
        raise LinkInvalid() from None
    if not isinstance(payload, dict):
        raise LinkInvalid()
    if clock.as_utc(signed_at) + max_age < now:
        raise LinkExpired(expired)
    return payload
