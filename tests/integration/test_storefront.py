"""What customers see: home, drop, batch and certificate pages, and the live stock endpoint."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from shop import clock, inventory
from shop.extensions import db
from shop.models import Order
from shop.models.drop import CLOSED, DRAFT, SCHEDULED
from shop.models.order import REFUNDED
from testkit.factories import make_batch, make_customer, make_drop, make_product
from tests.support.clients import log_in
from tests.support.warm import warmed
from tests.support.wire import recorded_statements, statements_sent

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def live_drop(**kwargs):
    now = clock.now()
    return make_drop(opens_at=now - timedelta(hours=1), closes_at=now + timedelta(days=1), **kwargs)


def sell(batch, customer, quantity, *, at, paid_after=timedelta(seconds=30)) -> Order:
    """A paid order through the real inventory rules."""
    order = inventory.hold(batch.id, quantity, customer=customer, now=at)
    inventory.confirm(order, now=at + paid_after, customer_email=customer.email)
    return order


def past_sold_out_batch(*, number=6, edition_size=4, minutes=4):
    """A closed drop whose batch sold out ``minutes`` after opening."""
    now = clock.now()
    opened = now - timedelta(days=10)
    drop = make_drop(title="Rye Six", opens_at=opened, closes_at=now - timedelta(days=9))
    batch = make_batch(drop=drop, number=number, edition_size=edition_size, limit=2)
    sell(batch, make_customer(), 2, at=opened + timedelta(minutes=1))
    sell(
        batch,
        make_customer(),
        2,
        at=opened + timedelta(minutes=2),
        paid_after=timedelta(minutes=minutes - 2),
    )
    return batch


def options(html: str, batch_id: int) -> list[str]:
    select = re.search(
        rf'<select name="quantity" id="quantity-{batch_id}"[^>]*>(.*?)</select>', html, re.S
    )
    assert select, "no quantity select"
    return re.findall(r'<option value="(\d+)"', select.group(1))


def test_home_shows_live_drops_first_then_upcoming_then_past(client):
    live = live_drop(title="Winter Release")
    batch = make_batch(drop=live, edition_size=10, number=7)
    sell(batch, make_customer(), 2, at=clock.now())
    upcoming = make_drop(
        title="Spring Release",
        state=SCHEDULED,
        opens_at=clock.now() + timedelta(days=5),
        closes_at=None,
    )
    make_batch(drop=upcoming, number=4, edition_size=150)
    past_sold_out_batch(minutes=4)
    db.session.commit()

    html = client.get("/").get_data(as_text=True)

    assert html.index("Winter Release") < html.index("Spring Release") < html.index("Rye Six")
    assert f'data-left-for="{batch.id}"' in html and "8 of 10 left" in html
    assert "Closes in" in html and "Opens in" in html
    assert "150 units" in html  # what the upcoming drop will release
    assert "Sold out</strong> in 4 min" in html


def test_a_live_drop_shows_each_batch_with_its_numbers_and_a_buy_form(client, app):
    drop = live_drop(title="Winter Release")
    batch = make_batch(drop=drop, number=7, edition_size=240, price=9500, limit=2)
    customer = make_customer()
    db.session.commit()
    log_in(client, customer)

    response = client.get(f"/drops/{drop.slug}")
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "Batch No. 7" in html and "$95.00" in html and "240 units" in html
    assert "2 per customer" in html and "240 of 240 left" in html
    assert f'action="/checkout/batches/{batch.id}"' in html
    assert _CSRF.search(html)
    assert options(html, batch.id) == ["1", "2"]
    assert f"Held for {app.config['SHOP_HOLD_MINUTES']} minutes while you pay" in html
    assert f'href="/products/{batch.product.slug}/batches/7"' in html


def test_the_quantity_offered_is_what_this_customer_may_still_buy(client):
    drop = live_drop()
    limited = make_batch(drop=drop, edition_size=50, limit=3)
    scarce = make_batch(drop=drop, edition_size=3, limit=3)
    customer = make_customer()
    mine = inventory.hold(limited.id, 2, customer=customer, now=clock.now())
    inventory.hold(scarce.id, 2, customer=make_customer(), now=clock.now())
    db.session.commit()
    log_in(client, customer)

    html = client.get(f"/drops/{drop.slug}").get_data(as_text=True)

    assert options(html, limited.id) == ["1"]  # limit 3, already holds 2
    assert options(html, scarce.id) == ["1"]  # only one unit left
    assert "You're holding 2 units" in html  # and may finish paying for them
    assert html.count('action="/checkout/orders/') == 1
    assert f'action="/checkout/orders/{mine.public_id}/pay"' in html


def test_many_running_holds_show_the_first_to_run_out_and_sum_up_the_rest(client):
    """A generous limit allows many holds: the page lists the three that run out first, each
    with its pay button, and one line for the rest — in the same one statement for any number."""
    drop = live_drop()
    batch = make_batch(drop=drop, edition_size=500, limit=100)
    batch.unit_label = "bottles"
    other = make_batch(drop=drop, edition_size=50, limit=10)
    customer = make_customer()
    start = clock.now()
    inventory.hold(other.id, 1, customer=customer, now=start)  # before the cap grows to 100
    orders = [
        inventory.hold(batch.id, quantity, customer=customer, now=start - timedelta(seconds=s))
        for s, quantity in ((10, 2), (40, 1), (20, 3), (30, 1), (50, 4), (0, 5))
    ]
    inventory.hold(batch.id, 7, customer=make_customer(), now=start)  # somebody else's
    db.session.commit()
    first_to_run_out = [orders[4], orders[1], orders[3]]  # the oldest holds expire first
    log_in(client, customer)

    path = f"/drops/{drop.slug}"
    warmed(lambda: client.get(path), drop.slug)  # the shared part cached: the rest is the visitor's
    with recorded_statements(db.engine) as few:
        html = client.get(path).get_data(as_text=True)
    for _ in range(20):
        inventory.hold(batch.id, 1, customer=customer, now=start)
    db.session.commit()
    warmed(lambda: client.get(path), drop.slug)
    with recorded_statements(db.engine) as many:
        longer = client.get(path).get_data(as_text=True)

    paying = re.findall(r'action="/checkout/orders/([^/"]+)/pay"', html)
    assert paying[:3] == [order.public_id for order in first_to_run_out]
    assert len(paying) == 4  # and the one hold on the other batch
    assert "And 3 more holds of 10 bottles" in html  # 2 + 3 + 5
    assert 'href="/account/orders">Pay for them in My orders' in html
    assert "And 23 more holds of 30 bottles" in longer
    assert len(re.findall(r'action="/checkout/orders/', longer)) == 4
    assert len(few) == len(many)  # the same statements for 6 holds as for 26


@pytest.mark.parametrize("phase", ["upcoming", "live", "sold out"])
def test_an_edition_of_one_is_one_bottle_never_1_bottles(client, phase):
    now = clock.now()
    if phase == "upcoming":
        drop = make_drop(state=SCHEDULED, opens_at=now + timedelta(days=1))
    else:
        drop = live_drop()
    batch = make_batch(drop=drop, edition_size=1, limit=1)
    batch.unit_singular, batch.unit_label = "bottle", "bottles"
    if phase == "sold out":
        sell(batch, make_customer(), 1, at=now - timedelta(minutes=5))
    db.session.commit()

    pages = [
        client.get(f"/drops/{drop.slug}").get_data(as_text=True),
        client.get(f"/products/{batch.product.slug}/batches/1").get_data(as_text=True),
        client.get("/").get_data(as_text=True),
    ]

    for html in pages:
        assert "1 bottles" not in html and "1 units" not in html
    assert "1 bottle<" in pages[0]  # the edition in the batch's facts
    if phase == "live":  # a visitor, not logged in: one per customer
        assert "We hold your bottle for" in pages[0]
    if phase == "upcoming":
        assert "One of one" in pages[0] and "a single bottle" in pages[0]
    if phase == "sold out":
        assert "one of one" in pages[0]


@pytest.mark.parametrize("edition_size", [1, 30])
def test_a_unit_named_by_the_maker_reads_right_for_one_and_for_several(client, edition_size):
    drop = live_drop()
    batch = make_batch(drop=drop, edition_size=edition_size, limit=1)
    batch.unit_singular, batch.unit_label = "scarf", "scarves"
    db.session.commit()

    html = client.get(f"/drops/{drop.slug}").get_data(as_text=True)

    assert "scarve<" not in html and "scarve " not in html
    assert "We hold your scarf for" in html  # a limit of one
    if edition_size == 1:
        assert "1 scarf<" in html and "a single scarf" not in html
    else:
        assert "30 scarves<" in html


def test_a_customer_at_the_limit_is_told_so_instead_of_a_form(client):
    drop = live_drop()
    batch = make_batch(drop=drop, edition_size=50, limit=1)
    customer = make_customer()
    inventory.hold(batch.id, 1, customer=customer, now=clock.now())
    db.session.commit()
    log_in(client, customer)

    html = client.get(f"/drops/{drop.slug}").get_data(as_text=True)

    assert "the most this batch allows per customer" in html
    assert f'action="/checkout/batches/{batch.id}"' not in html


def test_an_anonymous_visitor_is_asked_to_log_in_and_comes_back_to_the_batch(client):
    drop = live_drop()
    batch = make_batch(drop=drop)
    db.session.commit()

    html = client.get(f"/drops/{drop.slug}").get_data(as_text=True)

    assert "Log in to buy" in html
    assert f'href="/account/login?next=/drops/{drop.slug}%23buy-{batch.id}"' in html


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("upcoming", "Not open yet"),
        ("closed", "This drop has closed"),
        ("ended", "This drop has closed"),
        ("sold_out", "Every unit of this batch has found a home"),
    ],
)
def test_a_batch_that_cannot_be_bought_says_why_and_has_no_form(client, window, expected):
    now = clock.now()
    if window == "upcoming":
        drop = make_drop(state=SCHEDULED, opens_at=now + timedelta(hours=3), closes_at=None)
    elif window == "closed":
        drop = make_drop(state=CLOSED, opens_at=now - timedelta(days=1), closes_at=None)
    elif window == "ended":
        drop = make_drop(opens_at=now - timedelta(days=2), closes_at=now - timedelta(days=1))
    else:
        drop = live_drop()
    batch = make_batch(drop=drop, edition_size=2, limit=2)
    if window == "sold_out":
        sell(batch, make_customer(), 2, at=now)
    customer = make_customer()
    db.session.commit()
    log_in(client, customer)

    html = client.get(f"/drops/{drop.slug}").get_data(as_text=True)

    assert expected in html
    assert 'name="quantity"' not in html


def test_a_failed_purchase_shows_the_reason_next_to_that_batch(client):
    drop = live_drop()
    other = make_batch(drop=drop, edition_size=10)
    scarce = make_batch(drop=drop, edition_size=3, limit=2)
    sell(scarce, make_customer(), 2, at=clock.now())
    customer = make_customer()
    db.session.commit()
    log_in(client, customer)
    csrf = _CSRF.search(client.get(f"/drops/{drop.slug}").get_data(as_text=True)).group(1)

    response = client.post(
        f"/checkout/batches/{scarce.id}", data={"quantity": "2", "csrf_token": csrf}
    )
    html = response.get_data(as_text=True)

    assert response.status_code == 409
    assert f'id="buy-error-{scarce.id}"' in html and "Only 1 left" in html
    assert f'id="buy-error-{other.id}"' not in html
    assert f'action="/checkout/batches/{other.id}"' in html  # the rest of the drop still works


def test_drop_page_renders_an_error_banner_for_any_shop_error(app):
    from shop.errors import LimitReached
    from shop.storefront.views import drop_page

    drop = live_drop()
    batch = make_batch(drop=drop)
    db.session.commit()
    with app.test_request_context(f"/checkout/batches/{batch.id}", method="POST"):
        html = drop_page(drop, error=LimitReached(allowed=1))
    assert f'id="buy-error-{batch.id}"' in html
    assert "You can buy 1 more of this batch." in html


def test_the_batch_page_tells_the_origin_story_with_provenance_and_history(client):
    earlier = past_sold_out_batch(number=6, edition_size=4, minutes=4)
    drop = live_drop()
    batch = make_batch(earlier.product, drop, number=7, edition_size=240)
    batch.story = "## The grain\nEleven acres of **Abruzzi rye**."
    batch.origin_place = "Kessler Farm"
    batch.inputs = "Rye (85%), malted barley (15%)"
    batch.process = "Pot-distilled twice"
    db.session.commit()

    response = client.get(f"/products/{batch.product.slug}/batches/7")
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "<h3>The grain</h3>" in html and "<strong>Abruzzi rye</strong>" in html
    for fact in ("Kessler Farm", "Rye (85%), malted barley (15%)", "Pot-distilled twice"):
        assert re.search(rf"<th scope=\"row\">[^<]+</th><td>{re.escape(fact)}</td>", html)
    assert "Earlier batches" in html
    assert re.search(r"Batch No. 6</a>\s*— 4 units —\s*sold out in 4 min", html)
    assert "Log in to buy" in html  # the buy panel, because the drop is live


def test_a_makers_hostile_story_is_shown_inert(client):
    drop = live_drop()
    drop.story = '<script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror="alert(1)">'
    batch = make_batch(drop=drop)
    batch.story = "<iframe src=https://evil.example></iframe>"
    db.session.commit()

    pages = [
        client.get(f"/drops/{drop.slug}").get_data(as_text=True),
        client.get(f"/products/{batch.product.slug}/batches/{batch.number}").get_data(as_text=True),
    ]
    for html in pages:
        assert "<script>alert" not in html and "<iframe" not in html
        assert 'href="javascript:' not in html and "<img src=x" not in html


@pytest.mark.parametrize(
    "path",
    [
        "/drops/no-such-drop",
        "/drops/{draft}",
        "/products/no-such-product/batches/1",
        "/products/{product}/batches/99",
        "/products/{product}/batches/99999999999999999999",
        "/products/{draft_product}/batches/1",
        "/products/{product}/batches/one",
        "/u/no-such-certificate/qr.svg",
    ],
)
def test_unknown_things_answer_the_404_page(client, path):
    draft = make_drop(state=DRAFT)
    make_batch(drop=draft)
    product = make_product()
    make_batch(product, live_drop(), number=1)
    db.session.commit()
    url = path.format(
        draft=draft.slug, product=product.slug, draft_product=draft.batches[0].product.slug
    )

    response = client.get(url)

    assert response.status_code == 404
    assert "We couldn&#39;t find that page" in response.get_data(as_text=True)


@pytest.mark.parametrize("code", ["no-such-certificate", "x" * 500])
def test_unknown_certificate_codes_answer_404_with_their_own_page(client, code):
    response = client.get(f"/u/{code}")

    assert response.status_code == 404
    assert "No certificate has this code" in response.get_data(as_text=True)


def test_a_certificate_shows_the_number_and_no_personal_data_but_a_first_name(app, client):
    drop = live_drop()
    batch = make_batch(drop=drop, number=7, edition_size=240)
    owner = make_customer(name="Samantha Rivera-Lopez", email="sam.rivera@example.com")
    order = sell(batch, owner, 2, at=clock.now())
    db.session.commit()
    unit = order.units[1]

    response = client.get(f"/u/{unit.certificate_code}", headers={"Host": "127.0.0.1"})
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert re.search(r"No\. 2</span>\s*<span[^>]*>of 240", html)
    assert batch.product.name in html and "Batch No. 7" in html
    assert "Samantha" in html
    assert "Rivera" not in html and "sam.rivera" not in html and "example.com" not in html
    canonical = f"{app.config['SHOP_BASE_URL']}/u/{unit.certificate_code}?p="  # signed link
    assert f'<link rel="canonical" href="{canonical}' in html
    assert "127.0.0.1" not in html  # never built from the Host header
    assert '<svg viewBox="' in html and "style=" not in html.split("<svg", 1)[1].split("</svg>")[0]


def test_the_certificate_qr_code_is_served_as_a_standalone_svg(client):
    order = sell(make_batch(drop=live_drop()), make_customer(), 1, at=clock.now())
    db.session.commit()

    response = client.get(f"/u/{order.units[0].certificate_code}/qr.svg")

    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert response.get_data(as_text=True).lstrip().startswith("<?xml")
    assert "script" not in response.get_data(as_text=True)


def test_refunded_and_unpaid_units_have_no_certificate(client):
    drop = live_drop()
    refunded = sell(make_batch(drop=drop), make_customer(), 1, at=clock.now())
    refunded.state = REFUNDED
    db.session.commit()

    retired = client.get(f"/u/{refunded.units[0].certificate_code}")
    assert retired.status_code == 410
    assert "was refunded" in retired.get_data(as_text=True)
    assert client.get(f"/u/{refunded.units[0].certificate_code}/qr.svg").status_code == 404


def test_live_stock_comes_from_one_query_as_json(app, client):
    drop = live_drop()
    first = make_batch(drop=drop, edition_size=240)
    second = make_batch(drop=drop, edition_size=2, limit=2)
    sell(first, make_customer(), 2, at=clock.now())
    inventory.hold(second.id, 2, customer=make_customer(), now=clock.now())
    db.session.commit()
    slug, first_id, second_id = drop.slug, first.id, second.id
    db.session.remove()  # nothing cached: count what a fresh request costs
    with recorded_statements(db.engine) as statements:
        response = client.get(f"/api/drops/{slug}/stock")

    assert response.status_code == 200
    assert len(statements) == 1, statements
    body = response.get_json()
    assert body["drop"] == slug and body["phase"] == "live"
    assert body["batches"] == [
        {
            "id": first_id,
            "remaining": 238,
            "edition_size": 240,
            "sold_out": False,
            "sold_out_for_good": False,
        },
        {
            "id": second_id,
            "remaining": 0,
            "edition_size": 2,
            "sold_out": True,
            "sold_out_for_good": False,  # held, not sold: may come back
        },
    ]
    assert body["sold_out_for_good"] is False
    assert body["opens_at"].endswith("Z") and body["closes_at"].endswith("Z")
    assert body["now"].endswith("Z")
    assert "Set-Cookie" not in response.headers


def test_stock_of_an_unknown_or_draft_drop_is_a_json_404(client):
    draft = make_drop(state=DRAFT)
    db.session.commit()
    for slug in ("nope", draft.slug):
        response = client.get(f"/api/drops/{slug}/stock")
        assert response.status_code == 404
        assert response.get_json()["error"]["code"]


def test_a_generous_per_customer_limit_gets_a_number_field_not_a_huge_list(client):
    from testkit.factories import make_batch, make_customer

    batch = make_batch(drop=live_drop(), edition_size=100_000, limit=100_000)
    customer = make_customer()
    db.session.commit()
    log_in(client, customer)
    page = client.get(f"/drops/{batch.drop.slug}").get_data(as_text=True)
    assert 'type="number" name="quantity"' in page
    assert page.count("<option") < 50


def test_a_sold_out_answer_in_a_flash_crowd_stays_cheap(app, client):
    """Most of a flash crowd arrives after the last unit is gone: the 409 page they get must
    not cost a query per batch (tests/integration/test_sold_out.py counts it exactly)."""
    drop = live_drop()
    batches = [make_batch(drop=drop, number=n, edition_size=1, limit=1) for n in (1, 2, 3)]
    for batch in batches:
        inventory.hold(batch.id, 1, customer=make_customer(), now=clock.now())
    customer = make_customer()
    db.session.commit()
    log_in(client, customer)
    page = client.get(f"/drops/{drop.slug}").get_data(as_text=True)
    token = _CSRF.search(page).group(1)
    target = batches[0].id
    db.session.remove()
    on_postgresql = db.engine.dialect.name == "postgresql"
    with (statements_sent if on_postgresql else recorded_statements)(db.engine) as statements:
        response = client.post(
            f"/checkout/batches/{target}", data={"csrf_token": token, "quantity": "1"}
        )
    if on_postgresql:  # the wire shows transaction control too; count the queries
        statements = [s for s in statements if not s.startswith(("BEGIN", "COMMIT", "ROLLBACK"))]

    assert response.status_code == 409
    assert "Sold out" in response.get_data(as_text=True)
    # PostgreSQL: the hold statement (it checks the buyer and sees the stock is gone, so it
    # takes nothing and there is nothing to undo), then the small sold-out page: its one row
    # (catalog.sold_out_facts) and the user. SQLite runs the hold's reads as three statements.
    limit = 3 if db.engine.dialect.name == "postgresql" else 5
    assert len(statements) <= limit, "\n".join(statements)


def test_a_cold_drop_page_reads_its_numbers_then_its_whole_drop_in_one_statement(app, client):
    """The page a flash crowd reloads, rendered the first time: the live numbers (the cache's
    key) and then the drop, batches, products and images in one statement, however many there
    are, in the maker's order. Warm, it asks nothing (test_drop_page_cache.py)."""
    from shop.models import BatchImage

    drop = live_drop()
    batches = [make_batch(drop=drop, number=n) for n in (1, 2, 3)]
    for batch, count in zip(batches, (2, 0, 3), strict=True):
        for position in reversed(range(count)):  # stored out of order on purpose
            db.session.add(
                BatchImage(
                    batch=batch,
                    filename=f"b{batch.id}-{position}.jpg",
                    content_type="image/jpeg",
                    width=800,
                    height=600,
                    position=position,
                    slot=position,
                )
            )
    db.session.commit()
    slug, ids = drop.slug, [batch.id for batch in batches]
    db.session.remove()
    with recorded_statements(db.engine) as statements:
        response = client.get(f"/drops/{slug}")
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert len(statements) == 2, statements
    assert "content_version" in statements[0]
    assert [int(i) for i in re.findall(r'id="batch-(\d+)-title"', html)] == ids
    shown = re.findall(r'src="/media/([^"]+)"', html)
    assert shown == [f"b{ids[0]}-0.jpg", f"b{ids[2]}-0.jpg"]  # each batch's first picture
