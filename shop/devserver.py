"""The development shop in one process: the local Stripe emulator (when no Stripe key is
configured), a sweeper thread, and Flask's threaded server."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import click
from flask import Flask
from werkzeug.serving import run_simple

from config import EMULATOR_SECRET_KEY


def run(app: Flask, *, host: str, port: int) -> None:
    emulator = None
    if app.config.get("STRIPE_SECRET_KEY") == EMULATOR_SECRET_KEY:
        import stripe_emulator

        api = urlsplit(app.config["STRIPE_API_BASE"])
        emulator = stripe_emulator.serve_in_thread(
            host=api.hostname or "127.0.0.1",
            port=api.port or 12111,
            webhook_url=f"http://{host}:{port}/stripe/webhook",
            webhook_secret=app.config["STRIPE_WEBHOOK_SECRET"],
        )
        click.echo(f" * Local Stripe emulator on {emulator.url} (pay with 4242 4242 4242 4242)")
    threading.Thread(target=_sweep_forever, args=(app,), daemon=True, name="sweeper").start()
    click.echo(f" * Small Batch on http://{host}:{port}")
    try:
        # Flask's app.run() refuses to start inside the flask CLI; serve with Werkzeug directly.
        run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
    finally:
        if emulator is not None:
            emulator.stop()


def _sweep_forever(app: Flask) -> None:
    from shop import clock, sweeper
    from shop.extensions import db

    while True:
        time.sleep(app.config["SHOP_SWEEP_SECONDS"])
        with app.app_context():
            try:
                sweeper.sweep(clock.now())
            except Exception:  # the next pass retries
                app.logger.exception("sweep pass failed")
            finally:
                db.session.remove()
