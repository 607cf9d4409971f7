"""Floods of password work over real sockets: registrations and password changes against
gunicorn (several processes with threads), PostgreSQL and Redis are limited before any Argon2
runs, and a process whose hashing slots are all taken answers "try again" (503) at once while
the crowd's pages keep answering."""

from __future__ import annotations

import html
import secrets
from contextlib import ExitStack

import pytest
from sqlalchemy import func, select

from shop import limits, passwords
from shop.extensions import db
from shop.models import User
from testkit import bursts, databases, rawhttp, seed, servers
from tests.concurrency.conftest import (
    assert_no_server_errors,
    fresh_addresses,
    from_address,
)

pytestmark = pytest.mark.concurrency

PARALLEL = 40
BUSY = "checking a lot of passwords"


def amount(policy: str) -> int:
    """The per-minute number of a policy such as "20 per minute; 200 per hour"."""
    return int(policy.split()[0])


def accounts_named(app, tag: str) -> int:
    with app.app_context():
        count = db.session.scalar(
            select(func.count()).select_from(User).where(User.email.like(f"%{tag}%"))
        )
        db.session.remove()
    return count


def test_a_burst_of_registrations_from_one_address_creates_at_most_the_limit(
    limited_server, seed_app
):
    drop = seed.seed_live_drop(seed_app, edition_size=50)
    visitor = rawhttp.ShopSession(limited_server.address)
    assert visitor.get("/account/register").status == 200
    ip = fresh_addresses(1)[0]
    tag = secrets.token_hex(4)
    requests = [
        from_address(
            visitor.form_request(
                "/account/register",
                {
                    "email": f"flood-{tag}-{n}@example.com",
                    "display_name": "Flood",
                    "password": seed.PASSWORD,
                },
            ),
            ip,
        )
        for n in range(PARALLEL)
    ]

    outcome = bursts.burst(
        limited_server.address,
        requests,
        alongside=lambda: rawhttp.http_request(
            limited_server.address, "GET", f"/drops/{drop.slug}"
        ),
    )

    assert outcome.alongside.status == 200  # the crowd's page, in the middle of the flood
    refused = [r for r in outcome.responses if r.status != 303]
    assert {r.status for r in refused} <= {429, 503}, [r.text[:300] for r in refused]
    assert all(BUSY in html.unescape(r.text) for r in refused if r.status == 503)
    created = outcome.count(303)
    assert 0 < created <= amount(limits.REGISTER_PER_IP)
    assert outcome.count(429) >= PARALLEL - amount(limits.REGISTER_PER_IP)
    assert accounts_named(seed_app, tag) == created


def test_forty_parallel_guesses_at_the_current_password_check_five(limited_server, seed_app):
    """A stolen session cannot race the password form: five a minute, however many at once."""
    account = seed.create_customers(seed_app, 1)[0]
    with seed_app.app_context():
        before = db.session.get(User, account.id).password_hash
        db.session.remove()
    thief = rawhttp.login(limited_server.address, account.email, page="/account/password")
    requests = [
        from_address(
            thief.form_request(
                "/account/password",
                {
                    "current_password": f"guess number {n}",
                    "new_password": "owned by the thief",
                    "confirm_password": "owned by the thief",
                },
            ),
            ip,
        )
        for n, ip in enumerate(fresh_addresses(PARALLEL))
    ]

    outcome = bursts.burst(limited_server.address, requests)

    assert_no_server_errors(outcome.responses, limited_server)
    assert outcome.count(422) == amount(limits.PASSWORD_CHANGE_PER_CUSTOMER)
    assert outcome.count(429) == PARALLEL - amount(limits.PASSWORD_CHANGE_PER_CUSTOMER)
    with seed_app.app_context():
        assert db.session.get(User, account.id).password_hash == before
        db.session.remove()


def test_a_process_with_every_hashing_slot_taken_answers_try_again_and_serves_pages(
    race_database_url, seed_app
):
    """Real sockets and threads in one process, so the test can hold the process's slots as
    long-running hashes would: logins and registrations are told to come back, drop pages are
    not held up, and once a slot frees the same login goes through."""
    drop = seed.seed_live_drop(seed_app, edition_size=50)
    account = seed.create_customers(seed_app, 1)[0]
    app = databases.make_app(race_database_url, SHOP_PASSWORD_WAIT_SECONDS=0.05)
    server = servers.start_threaded_server(app)
    try:
        browser = rawhttp.ShopSession(server.address)
        assert browser.get("/account/login").status == 200
        login = browser.form_request(
            "/account/login", {"email": account.email, "password": account.password}
        )
        register = browser.form_request(
            "/account/register",
            {
                "email": f"held-{secrets.token_hex(4)}@example.com",
                "display_name": "Held",
                "password": seed.PASSWORD,
            },
        )
        with app.app_context(), ExitStack() as slots:
            for _ in range(app.config["SHOP_PASSWORD_CONCURRENCY"]):
                slots.enter_context(passwords.hashing_slot())
            outcome = bursts.burst(
                server.address,
                [login, register] * 10,
                alongside=lambda: rawhttp.http_request(
                    server.address, "GET", f"/drops/{drop.slug}"
                ),
            )
        assert outcome.statuses() == [503] * 20
        assert all(BUSY in html.unescape(r.text) for r in outcome.responses)
        assert all(int(r.headers["retry-after"]) > 0 for r in outcome.responses)
        assert outcome.alongside.status == 200
        assert rawhttp.send_raw(server.address, login).status == 303
    finally:
        server.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
