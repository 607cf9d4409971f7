"""The development shop in one process: the local Stripe emulator (when no Stripe key is
configured), the worker in a thread (sweeper and outbox), and Flask's threaded server."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import click
from flask import Flask
from werkzeug.serving import run_simple

from config import EMULATOR_SECRET_KEY
from shop import mail


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
    threading.Thread(target=_work_forever, args=(app,), daemon=True, name="worker").start()
    click.echo(f" * Small Batch on http://{host}:{port}")
    if mail.uses_mailbox(app.config):
        click.echo(f" * Email goes to the local mailbox: http://{host}:{port}/dev/mailbox")
    else:
        click.echo(" * Email goes out through SMTP_URL")
    try:
        # Flask's app.run() refuses to start inside the flask CLI; serve with Werkzeug directly.
        run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
    finally:
        if emulator is not None:
            emulator.stop()


def _work_forever(app: Flask) -> None:
    """The worker's jobs in a thread: the outbox every few seconds, the sweeper less often."""
    from shop import clock, worker

    sweep_every = app.config["SHOP_SWEEP_SECONDS"]
    next_sweep = time.monotonic() + sweep_every
    while True:
        time.sleep(app.config["SHOP_MAIL_POLL_SECONDS"])
        jobs: tuple[str, ...] = worker.POLL_PASS
        if time.monotonic() >= next_sweep:
            jobs, next_sweep = worker.SWEEP_PASS, time.monotonic() + sweep_every
        with app.app_context():
            worker.run_pass(clock.now(), jobs=jobs)
