"""Two app hosts behind nginx (tests/cluster/conftest.py): a burst of buys spread over both
never oversells, rate limits count once for both, a customer's session works on either host,
a Stripe webhook reaches the shop through nginx, and the shop's own "try again" is passed to
the customer as it is, never tried again on the other host."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from shop import messages
from shop.extensions import db
from testkit import bursts, factories, rawhttp, seed
from tests.cluster.conftest import (
    BUY_LIMIT_PER_CUSTOMER,
    PAY_PATH,
    Cluster,
    live_drop,
    tagged,
    wait_for,
)
from tests.support.console import image_bytes
from tests.support.stripe import session_id_from

pytestmark = pytest.mark.cluster


def test_a_burst_of_buys_spread_over_both_hosts_sells_each_unit_once(two_hosts: Cluster):
    drop = live_drop(two_hosts, edition_size=12, limit=2)
    customers = seed.create_customers(two_hosts.app, 30)
    with ThreadPoolExecutor(max_workers=6) as pool:
        sessions = list(
            pool.map(lambda c: two_hosts.login(c.email, page=f"/drops/{drop.slug}"), customers)
        )

    buys = [
        s.buy_request(drop.batch_id, headers=tagged(f"burst-{n}")) for n, s in enumerate(sessions)
    ]
    outcome = bursts.burst(two_hosts.nginx.address, buys, tls=two_hosts.nginx.tls())

    assert outcome.count(303) == 12
    refused = [r for r in outcome.responses if r.status != 303]
    assert [r.status for r in refused] == [409] * 18
    assert all("Sold out" in r.text for r in refused)
    assert two_hosts.sql(
        "SELECT edition_size, sold, held FROM batches WHERE id = :id", id=drop.batch_id
    ) == [(12, 0, 12)]
    answered_by = [two_hosts.nginx.logged(f"burst-{n}") for n in range(len(sessions))]
    assert all(len(entry.upstreams) == 1 for entry in answered_by)  # none passed on
    assert {two_hosts.host_name(entry.host) for entry in answered_by} == {"a", "b"}
    check = two_hosts.flask("shop", "ledger", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 did not reconcile" in check.stdout


def test_rate_limits_count_once_for_both_hosts(two_hosts: Cluster):
    drop = live_drop(two_hosts, edition_size=50, limit=1)
    [customer] = seed.create_customers(two_hosts.app, 1)
    session = two_hosts.login(customer.email, page=f"/drops/{drop.slug}")

    tries = 2 * BUY_LIMIT_PER_CUSTOMER  # as many as each host would allow on its own
    answers = [
        session.send(session.buy_request(drop.batch_id, headers=tagged(f"limited-{n}")))
        for n in range(tries)
    ]

    statuses = [answer.status for answer in answers]
    assert statuses.count(429) == tries - BUY_LIMIT_PER_CUSTOMER, statuses
    assert statuses[0] == 303  # the first try holds; the next are over the batch's limit
    let_through = [two_hosts.nginx.logged(f"limited-{n}") for n in range(BUY_LIMIT_PER_CUSTOMER)]
    assert {two_hosts.host_name(entry.host) for entry in let_through} == {"a", "b"}


def test_a_customer_signed_in_through_nginx_is_signed_in_on_either_host(two_hosts: Cluster):
    drop = live_drop(two_hosts, edition_size=10, limit=2)
    [customer] = seed.create_customers(two_hosts.app, 1)
    session = two_hosts.login(customer.email)

    pages = [
        session.send(session.get_request("/account/", headers=tagged(f"signed-in-{n}")))
        for n in range(4)
    ]
    assert [page.status for page in pages] == [200] * 4
    assert all(customer.email in page.text for page in pages)
    hosts = {two_hosts.host_name(two_hosts.nginx.logged(f"signed-in-{n}").host) for n in range(4)}
    assert hosts == {"a", "b"}

    # The same cookie on each host directly: a form read from one host is accepted by the other.
    on_a, on_b = (
        rawhttp.ShopSession(host.address, cookies=dict(session.cookies)) for host in two_hosts.hosts
    )
    page = on_a.request("GET", f"/drops/{drop.slug}", headers=as_nginx_sends(on_a))
    assert page.status == 200 and on_a.csrf_token
    on_b.csrf_token = on_a.csrf_token
    bought = on_b.send(on_b.buy_request(drop.batch_id, headers=as_nginx_sends(on_b)))
    assert bought.status == 303 and PAY_PATH.fullmatch(bought.location or "")


def as_nginx_sends(session: rawhttp.ShopSession) -> dict[str, str]:
    """What nginx adds to a request from a browser on https://… (the host trusts one proxy)."""
    origin = f"https://{session.address[0]}:{session.address[1]}/"
    return {"X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.1", "Referer": origin}


def buy_and_pay_through_nginx(two_hosts: Cluster, session: rawhttp.ShopSession, batch_id: int):
    """Buy one unit through nginx and follow on to Stripe; returns (order id, session id)."""
    bought = session.buy(batch_id)
    assert bought.status == 303, bought.text[:500]
    public_id = PAY_PATH.fullmatch(bought.location or "").group(1)
    to_stripe = session.get(bought.location)
    assert to_stripe.status == 303, to_stripe.text[:500]
    return public_id, session_id_from(to_stripe.location)


def test_a_stripe_webhook_reaches_the_shop_through_nginx(two_hosts: Cluster):
    drop = live_drop(two_hosts, edition_size=10, limit=2)
    [customer] = seed.create_customers(two_hosts.app, 1)
    session = two_hosts.login(customer.email, page=f"/drops/{drop.slug}")
    public_id, session_id = buy_and_pay_through_nginx(two_hosts, session, drop.batch_id)

    two_hosts.emulator.complete(session_id)  # the customer pays at Stripe; nobody returns

    event = two_hosts.emulator.event("checkout.session.completed", session_id)
    wait_for(
        lambda: two_hosts.sql("SELECT 1 FROM stripe_events WHERE id = :id", id=event["id"]),
        what="the webhook applied",
    )
    [(state, units)] = two_hosts.sql(
        "SELECT o.state, count(u.id) FROM orders o LEFT JOIN units u ON u.order_id = o.id "
        "WHERE o.public_id = :public_id GROUP BY o.state",
        public_id=public_id,
    )
    assert (state, units) == ("paid", 1)
    delivered = two_hosts.emulator.control("GET", f"/deliveries?event={event['id']}")["data"]
    assert [entry["status"] for entry in delivered if entry["ok"]] == [200]
    webhooks = [e for e in two_hosts.nginx.log() if e.path == "/stripe/webhook"]
    assert webhooks and all(e.status == 200 and e.host for e in webhooks)
    # The worker, the third process, sends the receipt.
    wait_for(
        lambda: two_hosts.sql(
            "SELECT 1 FROM messages m JOIN orders o ON o.id = m.order_id "
            "WHERE o.public_id = :public_id AND m.kind = :kind AND m.state = 'sent'",
            public_id=public_id,
            kind=messages.ORDER_PAID,
        ),
        what="the worker sending the receipt",
    )


def test_the_shops_own_try_again_is_answered_once_and_not_sent_to_the_other_host(
    two_hosts: Cluster,
):
    drop = live_drop(two_hosts, edition_size=10, limit=2)
    [customer] = seed.create_customers(two_hosts.app, 1)
    session = two_hosts.login(customer.email, page=f"/drops/{drop.slug}")
    bought = session.buy(drop.batch_id)
    assert bought.status == 303
    # Stripe fails every try of this host (its client tries 3 times); one more would succeed.
    two_hosts.emulator.faults(fail_next=3, fail_status=500, paths=["/v1/checkout/sessions"])
    try:
        answer = session.send(session.get_request(bought.location, headers=tagged("try-again")))
    finally:
        two_hosts.emulator.faults()

    assert answer.status == 503
    assert "Your units are still held" in answer.text  # the shop's page, not nginx's
    entry = two_hosts.nginx.logged("try-again")
    assert len(entry.upstreams) == 1 and entry.host is not None


def _maker_with_batch(two_hosts: Cluster) -> tuple[str, int]:
    with two_hosts.app.app_context():
        maker = factories.make_maker()
        batch = factories.make_batch(factories.make_product(maker), live=False)
        db.session.commit()
        found = (maker.email, batch.id)
        db.session.remove()
    return found


def test_a_picture_uploaded_through_one_host_is_served_by_the_other_through_nginx(
    two_hosts: Cluster,
):
    email, batch_id = _maker_with_batch(two_hosts)
    maker = two_hosts.login(email, page=f"/maker/batches/{batch_id}")
    picture = image_bytes("JPEG", (800, 600))

    uploaded = maker.send(maker.image_upload_request(batch_id, picture, headers=tagged("upload")))

    assert uploaded.status == 303, uploaded.text[:500]
    uploader = two_hosts.nginx.logged("upload").host
    [(name,)] = two_hosts.sql("SELECT filename FROM batch_images WHERE batch_id = :id", id=batch_id)
    served_by: dict[str | None, bytes] = {}
    for n in range(6):  # nginx takes turns: the next GET or the one after reaches the other
        answer = maker.send(maker.get_request(f"/media/{name}", headers=tagged(f"media-{n}")))
        assert answer.status == 200, answer.text[:300]
        served_by[two_hosts.nginx.logged(f"media-{n}").host] = answer.body
        if len(served_by) == 2:
            break
    assert uploader in served_by and len(served_by) == 2
    assert len(set(served_by.values())) == 1
    assert name == f"{hashlib.sha256(answer.body).hexdigest()}.jpg"
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_a_malformed_upload_through_nginx_gets_the_shops_own_answer(two_hosts: Cluster):
    email, batch_id = _maker_with_batch(two_hosts)
    maker = two_hosts.login(email, page=f"/maker/batches/{batch_id}")

    refused = maker.upload_image(batch_id, b"GIF89a but not really a picture" * 100)

    assert 400 <= refused.status < 500
    assert "Small Batch" in refused.text and "nginx" not in refused.text
    assert two_hosts.sql("SELECT count(*) FROM batch_images WHERE batch_id = :id", id=batch_id) == [
        (0,)
    ]
