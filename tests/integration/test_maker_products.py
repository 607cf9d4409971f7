"""Products, batches and their images through the maker console's views."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import func, select

from shop import products
from shop.extensions import db
from shop.models import Batch, BatchImage, ImageBlob, Product
from testkit.factories import make_batch, make_product
from tests.support.console import image_bytes, new_batch


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_a_maker_creates_a_product_whose_address_is_made_unique_from_its_name(console, maker):
    first = console.form("/maker/products/new", {"name": "Highland Rye", "description": "Rye."})
    second = console.form("/maker/products/new", {"name": "Highland  Rye!", "description": ""})

    assert first.status_code == second.status_code == 303
    slugs = sorted(db.session.scalars(select(Product.slug).where(Product.maker_id == maker.id)))
    assert slugs == ["highland-rye", "highland-rye-2"]
    assert "/batches/new" in first.headers["Location"]


def test_a_product_without_a_name_is_refused_with_a_message(console):
    response = console.form("/maker/products/new", {"name": "  ", "description": "x"})

    assert response.status_code == 422
    assert "Give the product a name." in response.get_data(as_text=True)
    assert _count(Product) == 0


def test_renaming_a_product_keeps_its_address(console, maker):
    product = make_product(maker, name="Rye")
    slug = product.slug

    response = console.form(f"/maker/products/{product.id}", {"name": "Highland Rye"})

    assert response.status_code == 303
    assert product.name == "Highland Rye" and product.slug == slug


def test_the_new_batch_form_suggests_the_next_free_number(console, maker):
    product = make_product(maker)
    make_batch(product, number=6, live=False)
    make_batch(product, number=7, live=False)

    html = console.get(f"/maker/products/{product.id}/batches/new").get_data(as_text=True)

    assert re.search(r'<input[^>]*id="number"[^>]*value="8"', html)
    assert "Next free number: 8" in html


def test_a_batch_is_created_with_its_price_parsed_into_minor_units(console, maker):
    product = make_product(maker)

    response = new_batch(console, product)

    assert response.status_code == 303
    batch = db.session.scalar(select(Batch))
    assert (batch.number, batch.edition_size, batch.price, batch.currency) == (1, 240, 9500, "usd")
    assert batch.unit_label == "bottles" and batch.process == "Pot-distilled twice"
    assert batch.produced_on.isoformat() == "2021-01-19" and batch.drop_id is None


def test_a_batch_names_its_unit_for_one_and_for_several_and_the_next_batch_repeats_them(
    console, maker
):
    product = make_product(maker)

    response = new_batch(console, product, unit_singular=" scarf ", unit_label="scarves")
    html = console.get(f"/maker/products/{product.id}/batches/new").get_data(as_text=True)

    assert response.status_code == 303
    batch = db.session.scalar(select(Batch))
    assert (batch.unit_singular, batch.unit_label) == ("scarf", "scarves")
    assert re.search(r'<input[^>]*id="unit_singular"[^>]*value="scarf"', html)
    assert re.search(r'<input[^>]*id="unit_label"[^>]*value="scarves"', html)


def test_a_batch_without_a_name_for_one_unit_is_refused_with_a_message(console, maker):
    product = make_product(maker)

    response = new_batch(console, product, unit_singular=" ")

    assert response.status_code == 422
    assert "What is one unit called?" in response.get_data(as_text=True)
    assert _count(Batch) == 0


def test_a_zero_decimal_currency_takes_whole_amounts(console, maker):
    product = make_product(maker)

    response = new_batch(console, product, unit_price="4800", currency="jpy")

    assert response.status_code == 303
    assert db.session.scalar(select(Batch.price)) == 4800


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"unit_price": "95.001"}, "Enter a price like"),
        ({"unit_price": "ninety"}, "Enter a price like"),
        ({"unit_price": "-5"}, "Enter a price like"),
        ({"unit_price": "0"}, "Enter a price like"),
        ({"unit_price": "95.50", "currency": "jpy"}, "0 decimal places for JPY"),
        ({"currency": "xxx"}, "Not a valid choice"),
        ({"edition_size": "0"}, "Number must be between 1"),
        ({"per_customer_limit": "0"}, "Number must be at least 1"),
        ({"number": ""}, "Give the batch a number."),
    ],
)
def test_bad_batch_input_is_refused_with_a_message_and_writes_nothing(
    console, maker, changes, message
):
    product = make_product(maker)

    response = new_batch(console, product, **changes)

    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert _count(Batch) == 0


def test_a_batch_number_cannot_be_used_twice_for_one_product(console, maker):
    product = make_product(maker)
    make_batch(product, number=1, live=False)

    response = new_batch(console, product)

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "already has a Batch No. 1" in html and "next free number is 2" in html
    assert _count(Batch) == 1


def test_the_story_preview_returns_sanitized_html(console):
    response = console.post(
        "/maker/preview",
        json={"markdown": "**Rye** <script>alert(1)</script> [x](javascript:alert(1))"},
        headers={"X-CSRFToken": console.csrf},
    )

    assert response.status_code == 200
    html = response.json["html"]
    assert "<strong>Rye</strong>" in html
    assert "<script" not in html and 'href="javascript' not in html


@pytest.mark.parametrize(
    "payload", [{"markdown": 5}, {"text": "x"}, ["x"], {"markdown": "x" * 20001}]
)
def test_the_story_preview_refuses_bad_json_with_a_reason(console, payload):
    response = console.post("/maker/preview", json=payload, headers={"X-CSRFToken": console.csrf})

    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_input"


def test_the_story_preview_needs_the_csrf_token(console):
    response = console.post("/maker/preview", json={"markdown": "hi"})

    assert response.status_code == 400


def test_an_uploaded_image_is_stored_under_a_server_made_name(app, console, maker):
    batch = make_batch(make_product(maker), live=False)

    response = console.form(
        f"/maker/batches/{batch.id}/images",
        {
            "alt": "The bottle on the bench",
            "image": (io.BytesIO(image_bytes()), "../../../etc/passwd.jpg"),
        },
        content_type="multipart/form-data",
    )

    assert response.status_code == 303
    image = db.session.scalar(select(BatchImage))
    assert image.alt == "The bottle on the bench" and image.content_type == "image/jpeg"
    assert "passwd" not in image.filename and image.filename.endswith(".jpg")
    served = console.get(f"/media/{image.filename}")
    served.close()
    assert served.status_code == 200 and served.mimetype == "image/jpeg"


def test_a_file_that_is_not_an_image_is_refused_on_the_batch_page(console, maker):
    batch = make_batch(make_product(maker), live=False)

    response = console.form(
        f"/maker/batches/{batch.id}/images",
        {"alt": "x", "image": (io.BytesIO(b"<html><script>alert(1)</script></html>"), "photo.jpg")},
        content_type="multipart/form-data",
    )

    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "an image we can read (JPEG, PNG or WebP)" in html
    assert re.search(r'<input[^>]*id="unit_price"[^>]*value="25.00"', html)  # form still whole
    assert _count(BatchImage) == 0


def test_an_image_needs_a_description(console, maker):
    batch = make_batch(make_product(maker), live=False)

    response = console.form(
        f"/maker/batches/{batch.id}/images",
        {"alt": "", "image": (io.BytesIO(image_bytes()), "a.jpg")},
        content_type="multipart/form-data",
    )

    assert response.status_code == 422
    assert _count(BatchImage) == 0


def test_removing_an_image_deletes_its_row_and_its_file(app, console, maker):
    batch = make_batch(make_product(maker), live=False)
    console.form(
        f"/maker/batches/{batch.id}/images",
        {"alt": "Bottle", "image": (io.BytesIO(image_bytes("PNG")), "a.png")},
        content_type="multipart/form-data",
    )
    image = db.session.scalar(select(BatchImage))
    filename = image.filename

    response = console.form(f"/maker/images/{image.id}/delete")

    assert response.status_code == 303
    assert _count(BatchImage) == 0
    assert console.get(f"/media/{filename}").status_code == 404


def test_an_image_description_can_be_corrected(console, maker):
    batch = make_batch(make_product(maker), live=False)
    console.form(
        f"/maker/batches/{batch.id}/images",
        {"alt": "Botle", "image": (io.BytesIO(image_bytes()), "a.jpg")},
        content_type="multipart/form-data",
    )
    image = db.session.scalar(select(BatchImage))

    console.form(f"/maker/images/{image.id}/alt", {"alt": "Bottle No. 7 on the bench"})

    assert image.alt == "Bottle No. 7 on the bench"


def _upload(console, batch_id: int, alt: str):
    return console.form(
        f"/maker/batches/{batch_id}/images",
        {"alt": alt, "image": (io.BytesIO(image_bytes()), "a.jpg")},
        content_type="multipart/form-data",
    )


def test_a_batch_takes_no_picture_past_the_cap_and_keeps_no_file_of_the_refused_one(
    app, console, maker
):
    batch = make_batch(make_product(maker), live=False)
    for n in range(products.MAX_IMAGES_PER_BATCH):
        assert _upload(console, batch.id, f"Picture {n}").status_code == 303

    response = _upload(console, batch.id, "One too many")

    assert response.status_code == 422
    assert "up to 12 images" in response.get_data(as_text=True)
    assert _count(BatchImage) == products.MAX_IMAGES_PER_BATCH
    # The same picture each time: stored once, and the refused upload left nothing else.
    assert db.session.scalars(select(ImageBlob.digest)).all() == [
        db.session.scalar(select(BatchImage.digest).limit(1))
    ]


def test_a_removed_picture_frees_its_slot_and_the_next_one_is_shown_last(console, maker):
    batch = make_batch(make_product(maker), live=False)
    for n in range(products.MAX_IMAGES_PER_BATCH):
        _upload(console, batch.id, f"Picture {n}")
    first = db.session.scalar(select(BatchImage).where(BatchImage.alt == "Picture 0"))
    console.form(f"/maker/images/{first.id}/delete")

    assert _upload(console, batch.id, "The new one").status_code == 303

    shown = db.session.scalars(
        select(BatchImage).where(BatchImage.batch_id == batch.id).order_by(BatchImage.position)
    ).all()
    assert len(shown) == products.MAX_IMAGES_PER_BATCH
    assert shown[-1].alt == "The new one" and shown[-1].slot == 0
