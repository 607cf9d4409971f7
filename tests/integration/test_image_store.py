"""Batch images in the database: served with year-long caching and ETags, stored once per
content however many batches show it, and uploads from before moved in by a command."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from sqlalchemy import func, select

from shop import clock, products
from shop.extensions import db
from shop.models import BatchImage, ImageBlob
from testkit.factories import make_batch, make_product
from tests.support.console import image_bytes


def _upload(console, batch_id: int, picture: bytes, alt: str = "The bottle"):
    return console.form(
        f"/maker/batches/{batch_id}/images",
        {"alt": alt, "image": (io.BytesIO(picture), "a.png")},
        content_type="multipart/form-data",
    )


def _blobs() -> int:
    return db.session.scalar(select(func.count()).select_from(ImageBlob))


def test_an_image_is_served_for_a_year_with_its_digest_as_etag_and_304_when_unchanged(
    console, client, maker
):
    batch = make_batch(make_product(maker), live=False)
    _upload(console, batch.id, image_bytes("PNG"))
    image = db.session.scalar(select(BatchImage))

    first = client.get(f"/media/{image.filename}")
    again = client.get(f"/media/{image.filename}", headers={"If-None-Match": first.headers["ETag"]})

    assert first.status_code == 200 and first.mimetype == "image/png"
    assert first.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert first.headers["ETag"] == f'"{image.digest}"'
    assert image.filename == f"{hashlib.sha256(first.data).hexdigest()}.png"
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Cache-Control"] == first.headers["Cache-Control"]
    other = client.get(f"/media/{image.filename}", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.data == first.data


def test_a_picture_two_batches_show_stays_until_the_last_one_removes_it(console, client, maker):
    product = make_product(maker)
    first, second = make_batch(product, number=1, live=False), make_batch(product, number=2)
    picture = image_bytes("PNG", (90, 60))
    _upload(console, first.id, picture)
    _upload(console, second.id, picture)
    shown = db.session.scalars(select(BatchImage).order_by(BatchImage.id)).all()
    ids, name = [image.id for image in shown], shown[0].filename
    assert shown[1].filename == name and _blobs() == 1

    console.form(f"/maker/images/{ids[0]}/delete")

    assert client.get(f"/media/{name}").status_code == 200
    assert _blobs() == 1

    console.form(f"/maker/images/{ids[1]}/delete")

    assert client.get(f"/media/{name}").status_code == 404
    assert _blobs() == 0


def test_a_refused_upload_stores_nothing(console, maker):
    batch = make_batch(make_product(maker), live=False)

    response = _upload(console, batch.id, image_bytes("GIF"))

    assert response.status_code == 422
    assert "Upload a JPEG, PNG or WebP" in response.get_data(as_text=True)
    assert _blobs() == 0


def _uploads_from_before(app, count: int) -> list[BatchImage]:
    """Pictures as the shop stored them before the store: a random name, a file in
    SHOP_UPLOAD_DIR, no digest."""
    directory = Path(app.config["SHOP_UPLOAD_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    batch = make_batch(make_product(), live=False)
    made = []
    for n in range(count):
        name = f"{n:032x}.png"
        (directory / name).write_bytes(image_bytes("PNG", (20 + n, 20)))
        image = BatchImage(
            batch_id=batch.id,
            slot=n,
            position=n,
            filename=name,
            content_type="image/png",
            width=20 + n,
            height=20,
            alt=f"Old picture {n}",
            created_at=clock.now(),
        )
        db.session.add(image)
        made.append(image)
    db.session.commit()
    return made


def test_an_upload_from_before_is_served_from_its_file_until_it_is_moved(app, client):
    (old,) = _uploads_from_before(app, 1)

    response = client.get(f"/media/{old.filename}")
    data = response.get_data()
    response.close()

    assert response.status_code == 200 and response.mimetype == "image/png"
    assert data == (Path(app.config["SHOP_UPLOAD_DIR"]) / old.filename).read_bytes()


def test_images_migrate_moves_every_upload_into_the_store_once(app, runner, client):
    old = _uploads_from_before(app, 3)
    directory = Path(app.config["SHOP_UPLOAD_DIR"])
    files = {image.filename: (directory / image.filename).read_bytes() for image in old}

    result = runner.invoke(args=["shop", "images", "migrate"])

    assert result.exit_code == 0, result.output
    assert "3 moved into the database store, 0 already there, 0 missing" in result.output
    for path in directory.iterdir():
        path.unlink()  # the files are no longer needed: the store serves every name
    for name, data in files.items():
        served = client.get(f"/media/{name}")
        assert served.status_code == 200 and served.data == data
        assert served.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert _blobs() == 3

    again = runner.invoke(args=["shop", "images", "migrate"])

    assert again.exit_code == 0, again.output
    assert "0 moved into the database store, 3 already there, 0 missing" in again.output
    assert _blobs() == 3


def test_images_migrate_names_a_missing_file_and_fails_after_moving_the_rest(app, runner):
    old = _uploads_from_before(app, 2)
    (Path(app.config["SHOP_UPLOAD_DIR"]) / old[0].filename).unlink()

    result = runner.invoke(args=["shop", "images", "migrate"])

    assert result.exit_code == 1
    assert f"picture {old[0].id}'s file is not in" in result.output
    assert "1 moved into the database store, 0 already there, 1 missing" in result.output
    db.session.expire_all()
    assert db.session.get(BatchImage, old[0].id).digest is None
    assert db.session.get(BatchImage, old[1].id).digest is not None


def test_a_removed_picture_from_before_takes_its_stored_bytes_with_it(app, runner, maker):
    (old,) = _uploads_from_before(app, 1)
    runner.invoke(args=["shop", "images", "migrate"])
    db.session.expire_all()
    image = db.session.get(BatchImage, old.id)

    products.remove_image(image, actor=maker, now=clock.now())
    db.session.commit()

    assert _blobs() == 0
