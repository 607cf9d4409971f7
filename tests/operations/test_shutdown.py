"""SIGTERM lets work in flight finish: the worker completes the pass it is in (a hold whose
Stripe session is slow to expire is still released) and exits 0; gunicorn answers the request
it is serving before it stops."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from shop import clock
from shop.extensions import db
from shop.models import Batch, Order, User
from shop.models.order import EXPIRED
from testkit import databases, rawhttp, seed, servers
from tests.support.stripe import held_order, stripe_environment, stripe_settings

pytestmark = pytest.mark.concurrency

STRIPE_DELAY = 3.0  # seconds each slowed Stripe call takes


def wait_for(condition, *, timeout: float = 30.0, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


@pytest.fixture
def stripe_app(ops_database_url, emulator):
    app = databases.make_app(ops_database_url, **stripe_settings(emulator))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_sigterm_lets_the_worker_finish_the_pass_it_is_in(
    stripe_app, ops_app, ops_database_url, emulator
):
    drop = seed.seed_live_drop(stripe_app)
    [customer] = seed.create_customers(stripe_app, 1)
    with stripe_app.app_context():
        order = held_order(db.session.get(Batch, drop.batch_id), db.session.get(User, customer.id))
        order_id, session_id = order.id, order.checkout_session_id
        db.session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(hold_expires_at=clock.now() - timedelta(minutes=1))
        )
        db.session.commit()
    expire = f"/v1/checkout/sessions/{session_id}/expire"
    emulator.faults(delay_seconds=STRIPE_DELAY, paths=[expire])

    env = servers.server_env(
        ops_database_url, base_url="http://127.0.0.1:9", extra=stripe_environment(emulator)
    )
    with tempfile.TemporaryFile("w+") as output:
        worker = subprocess.Popen(
            [str(servers.VENV_BIN / "flask"), "--app", "wsgi", "shop", "worker", "--interval", "1"],
            cwd=servers.ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: emulator.api_calls(expire), what="the sweeper asking Stripe")
            worker.send_signal(signal.SIGTERM)  # mid-pass: Stripe has not answered yet
            asked_at = time.monotonic()
            exit_code = worker.wait(timeout=20)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(5)
        output.seek(0)
        log = output.read()
    assert exit_code == 0, log
    assert time.monotonic() - asked_at < 15  # no further pass, no hang
    assert "finishing the pass in progress" in log
    with stripe_app.app_context():
        order = db.session.get(Order, order_id)
        batch = db.session.get(Batch, drop.batch_id)
        assert order.state == EXPIRED  # the pass released the hold before exiting
        assert batch.held == 0


def test_sigterm_lets_gunicorn_answer_the_request_in_flight(ops_database_url, ops_app, emulator):
    drop = seed.seed_live_drop(ops_app)
    [customer] = seed.create_customers(ops_app, 1)
    server = servers.start_gunicorn(
        ops_database_url, workers=1, threads=2, extra_env=stripe_environment(emulator)
    )
    try:
        session = rawhttp.login(server.address, customer.email, page=f"/drops/{drop.slug}")
        bought = session.buy(drop.batch_id)
        assert bought.status == 303
        emulator.faults(delay_seconds=STRIPE_DELAY, paths=["/v1/checkout/sessions"])
        answers: list[rawhttp.Response] = []
        paying = threading.Thread(
            target=lambda: answers.append(session.get(bought.location.removeprefix(server.url)))
        )
        paying.start()
        wait_for(lambda: emulator.api_calls("/v1/checkout/sessions"), what="the shop asking Stripe")
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        paying.join(20)
        assert server.process.wait(20) == 0
    finally:
        server.stop()
    assert [answer.status for answer in answers] == [303]
    assert answers[0].location.startswith(emulator.url)  # to Stripe's page: the session exists
