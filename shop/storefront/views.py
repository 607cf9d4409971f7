"""What customers see: the home page, drops, batches and certificates."""

from __future__ import annotations

from flask import Blueprint, abort, render_template

from shop import catalog, clock, images

bp = Blueprint("storefront", __name__)


@bp.get("/")
def home():
    now = clock.now()
    return render_template("storefront/home.html", listing=catalog.home_listing(now), now=now)


@bp.get("/drops/<slug>")
def drop(slug: str):
    found = catalog.public_drop(slug)
    if found is None:
        abort(404)
    now = clock.now()
    return render_template("storefront/drop.html", drop=found, now=now, phase=found.phase(now))


@bp.get("/media/<path:filename>")
def media(filename: str):
    """Uploaded images, by their server-generated names only."""
    return images.send(filename)
