"""The maker console in tests: browsers that don't share ``g``, logins, CSRF tokens, images."""

from __future__ import annotations

import io

from flask import Flask
from PIL import Image

from shop.models import Product, User
from tests.support.clients import FreshContextClient, csrf_token_in

#: A complete, valid new-batch form.
BATCH = {
    "number": "1",
    "edition_size": "240",
    "unit_label": "bottles",
    "unit_singular": "bottle",
    "unit_price": "95.00",
    "currency": "usd",
    "per_customer_limit": "2",
    "summary": "Spicy.",
    "story": "## Grain\nFrom **Kessler** farm.",
    "origin_place": "Kessler Farm",
    "produced_on": "2021-01-19",
    "inputs": "Rye, barley",
    "making": "Pot-distilled twice",
}


class Browser(FreshContextClient):
    """A browser for the console: a fresh app context per request and a CSRF token at hand."""


def browser(app: Flask, user: User | None = None) -> Browser:
    """A fresh browser, logged in as ``user`` when given, with a CSRF token ready."""
    client = Browser(app, app.response_class, use_cookies=True)
    if user is not None:
        with client.session_transaction() as session:
            session["_user_id"] = user.get_id()
            session["_fresh"] = True
    page = client.get("/account/login" if user is None else "/account/")
    client.csrf = csrf_token_in(page.get_data(as_text=True))
    return client


def new_batch(console: Browser, product: Product, **changes: str):
    """Submit the new-batch form of ``product``: :data:`BATCH` with ``changes``."""
    return console.form(f"/maker/products/{product.id}/batches/new", {**BATCH, **changes})


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), **save) -> bytes:
    image = Image.new("RGB", size, (180, 120, 60))
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()
