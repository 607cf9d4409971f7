"""Bursts of wrong passwords against gunicorn (several processes with threads), PostgreSQL and
Redis: a login limit is counted before the password is checked, so however many guesses arrive
at the same instant, no more than the limit are ever checked."""

from __future__ import annotations

import random

import pytest

from shop import limits
from testkit import bursts, rawhttp, seed, servers
from tests.concurrency.conftest import assert_no_server_errors, fresh_addresses

pytestmark = pytest.mark.concurrency

PARALLEL = 40


def amount(policy: str) -> int:
    """The per-minute number of a policy such as "30 per minute; 300 per hour"."""
    return int(policy.split()[0])


@pytest.fixture(scope="module")
def victim(seed_app) -> seed.Customer:
    return seed.create_customers(seed_app, 1)[0]


def wrong_password_logins(server: servers.Server, emails: list[str], ips: list[str]) -> list[bytes]:
    """One login form per (email, address), all with one session's CSRF token."""
    browser = rawhttp.ShopSession(server.address)
    assert browser.get("/account/login").status == 200
    return [
        rawhttp.build_request(
            server.address,
            "POST",
            "/account/login",
            fields={"csrf_token": browser.csrf_token, "email": email, "password": "not it at all"},
            cookies=browser.cookies,
            headers={"X-Forwarded-For": ip},
        )
        for email, ip in zip(emails, ips, strict=True)
    ]


def test_forty_parallel_guesses_at_one_account_from_one_address_check_ten_passwords(
    limited_server, victim
):
    ip = fresh_addresses(1)[0]
    requests = wrong_password_logins(limited_server, [victim.email] * PARALLEL, [ip] * PARALLEL)

    outcome = bursts.burst(limited_server.address, requests)

    assert_no_server_errors(outcome.responses, limited_server)
    assert outcome.count(401) == amount(limits.LOGIN_PER_ACCOUNT_AND_IP)
    assert outcome.count(429) == PARALLEL - amount(limits.LOGIN_PER_ACCOUNT_AND_IP)


def test_forty_parallel_guesses_at_one_account_from_forty_addresses_check_thirty(
    limited_server, seed_app
):
    account = seed.create_customers(seed_app, 1)[0]
    requests = wrong_password_logins(
        limited_server, [account.email] * PARALLEL, fresh_addresses(PARALLEL)
    )

    outcome = bursts.burst(limited_server.address, requests)

    assert_no_server_errors(outcome.responses, limited_server)
    assert outcome.count(401) == amount(limits.LOGIN_PER_ACCOUNT)
    assert outcome.count(429) == PARALLEL - amount(limits.LOGIN_PER_ACCOUNT)


def test_forty_parallel_guesses_at_forty_accounts_from_one_address_check_thirty(
    limited_server,
):
    ip = fresh_addresses(1)[0]
    emails = [f"stuffed-{random.randrange(10**9)}-{n}@example.com" for n in range(PARALLEL)]
    requests = wrong_password_logins(limited_server, emails, [ip] * PARALLEL)

    outcome = bursts.burst(limited_server.address, requests)

    assert_no_server_errors(outcome.responses, limited_server)
    assert outcome.count(401) == amount(limits.LOGIN_PER_IP)
    assert outcome.count(429) == PARALLEL - amount(limits.LOGIN_PER_IP)


def test_the_right_password_in_a_burst_of_guesses_uses_nothing_up(limited_server, seed_app):
    """Successes give their place back, even while they ran next to failures."""
    account = seed.create_customers(seed_app, 1)[0]
    ip = fresh_addresses(1)[0]
    browser = rawhttp.ShopSession(limited_server.address)
    assert browser.get("/account/login").status == 200
    right = [
        rawhttp.build_request(
            limited_server.address,
            "POST",
            "/account/login",
            fields={
                "csrf_token": browser.csrf_token,
                "email": account.email,
                "password": account.password,
            },
            cookies=browser.cookies,
            headers={"X-Forwarded-For": ip},
        )
        for _ in range(5)
    ]
    limit = amount(limits.LOGIN_PER_ACCOUNT_AND_IP)
    wrong = wrong_password_logins(limited_server, [account.email] * (limit - 1), [ip] * (limit - 1))

    outcome = bursts.burst(limited_server.address, right + wrong)

    assert_no_server_errors(outcome.responses, limited_server)
    checked = outcome.count(401)
    assert checked <= limit - 1
    assert outcome.count(303) + checked + outcome.count(429) == len(right) + len(wrong)
    # Only the failures kept their places: exactly the rest of the limit is left.
    after = [
        rawhttp.send_raw(limited_server.address, wrong[0]).status for _ in range(limit - checked)
    ]
    assert after == [401] * (limit - checked), outcome.statuses()
    assert rawhttp.send_raw(limited_server.address, wrong[0]).status == 429
