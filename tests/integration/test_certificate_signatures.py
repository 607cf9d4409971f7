"""Certificates that prove themselves (issue 18, item 3), on SQLite and PostgreSQL: the page
checks the shop's Ed25519 signature over what a link claims, the QR code (PNG) decodes to that
signed link, the public key is published, and the verifier agrees offline."""

from __future__ import annotations

import io
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import zxingcpp
from PIL import Image

import config as settings
from shop import certificates, clock, create_app, inventory
from shop.extensions import db
from shop.verify_certificate import main as verify_main
from testkit.factories import make_batch, make_customer, make_drop, make_product
from tests.security.helpers import production_env


@pytest.fixture
def unit(app):
    now = clock.now()
    drop = make_drop(opens_at=now - timedelta(hours=1), closes_at=None)
    batch = make_batch(make_product(name="Highland Rye"), drop, number=7, edition_size=240)
    customer = make_customer()
    order = inventory.hold(batch.id, 1, customer=customer, now=now)
    inventory.confirm(order, now=now, customer_email=customer.email)
    db.session.commit()
    return order.units[0]


def _signed_link(client, unit) -> str:
    with client.application.app_context():
        from shop.models import Unit

        return certificates.link_for(db.session.get(Unit, unit.id))


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_the_signed_link_says_genuine_and_the_signature_checks_out(client, unit):
    link = _signed_link(client, unit)

    page = client.get(_path(link))

    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Genuine" in html and "the signature checks out" in html
    assert f"?p={unit.batch.product.slug}&amp;b=7&amp;n={unit.serial}&amp;d=" in html


def test_a_plain_code_is_checked_against_the_records_and_offers_the_signed_link(client, unit):
    page = client.get(f"/u/{unit.certificate_code}")

    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Genuine" in html and "in Small Batch" in html
    assert "&amp;s=" in html


@pytest.mark.parametrize(
    "edit",
    [
        lambda q: q.replace("&n=1&", "&n=2&"),
        lambda q: q.replace("&b=7&", "&b=8&"),
        lambda q: q.replace("p=", "p=x"),
        lambda q: q.replace("&d=20", "&d=19"),
        lambda q: q[:-3] + ("AAA" if not q.endswith("AAA") else "BBB"),
        lambda q: q + "%00",
        lambda q: q.split("&s=")[0] + "&s=not-a-signature",
    ],
    ids=["serial", "batch", "product", "day", "signature", "junk", "malformed signature"],
)
def test_a_changed_link_says_clearly_it_is_not_genuine_never_a_500(client, unit, edit):
    link = _path(_signed_link(client, unit))
    assert "&n=1&" in link

    page = client.get(edit(link))

    assert page.status_code == 400
    assert "This certificate link is not genuine" in page.get_data(as_text=True)


def test_an_unknown_code_is_not_genuine_either(client, unit):
    link = _path(_signed_link(client, unit)).replace(unit.certificate_code, "Z" * 22)

    page = client.get(link)

    assert page.status_code == 404
    assert "No certificate has this code" in page.get_data(as_text=True)


def test_the_published_key_verifies_the_link_the_page_gives(client, unit):
    key = client.get(certificates.KEY_PATH)

    assert key.status_code == 200 and key.mimetype == "text/plain"  # readable in a browser
    public = certificates.public_key_from_pem(key.get_data())
    presented = certificates.claim_from_url(_signed_link(client, unit))
    assert certificates.verify(presented.claim, presented.signature, public)


def test_the_qr_png_decodes_to_the_signed_link_and_following_it_says_genuine(client, unit):
    png = client.get(f"/u/{unit.certificate_code}/qr.png")

    assert png.status_code == 200 and png.mimetype == "image/png"
    [decoded] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.get_data())))
    assert decoded.text == _signed_link(client, unit)
    followed = client.get(_path(decoded.text))
    assert followed.status_code == 200
    assert "the signature checks out" in followed.get_data(as_text=True)


def test_the_verifier_agrees_offline_and_catches_a_changed_link(client, unit, tmp_path, capsys):
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(client.get(certificates.KEY_PATH).get_data())
    link = _signed_link(client, unit)

    assert verify_main([link, "--key", str(key_file)]) == 0
    assert capsys.readouterr().out.startswith("OK: genuine")
    assert verify_main([link.replace("&n=1&", "&n=9&"), "--key", str(key_file)]) == 1
    assert "NOT GENUINE" in capsys.readouterr().out


def test_the_receipt_links_each_number_to_its_signed_certificate(app, unit):
    from sqlalchemy import select

    from shop import messages
    from shop.models import Message

    messages.order_paid(unit.order)
    db.session.commit()

    body = db.session.scalar(select(Message)).text_body
    assert f"/u/{unit.certificate_code}?p=" in body and "&s=" in body


def test_production_refuses_to_start_without_a_valid_certificate_key(monkeypatch, tmp_path):
    database = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    production_env(monkeypatch, database, SHOP_CERTIFICATE_KEY=None)
    with pytest.raises(RuntimeError, match="SHOP_CERTIFICATE_KEY"):
        create_app(settings.load())
    production_env(monkeypatch, database, SHOP_CERTIFICATE_KEY="-----BEGIN PRIVATE KEY-----")
    with pytest.raises(RuntimeError, match="Ed25519 private key in PEM"):
        create_app(settings.load())
    production_env(monkeypatch, database)
    assert create_app(settings.load()).config["SHOP_CERTIFICATE_KEY"]
