"""Batch images in an S3-compatible bucket (``SHOP_IMAGE_STORE=s3``), against a real server
over HTTP (moto's, in a process of its own): the bytes go to the bucket, the database keeps
only which pictures exist, and every answer is the same as with the database store."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from sqlalchemy import select

from shop.extensions import db
from shop.models import BatchImage, ImageBlob
from testkit.factories import make_batch, make_product
from tests.integration.test_image_store import _uploads_from_before
from tests.support.console import image_bytes
from tests.support.s3 import CREDENTIALS


@pytest.fixture
def bucket(s3_server, monkeypatch) -> str:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return s3_server.new_bucket()


@pytest.fixture
def app_overrides(s3_server, bucket) -> dict:
    return {
        name: value
        for name, value in s3_server.settings(bucket).items()
        if name.startswith("SHOP_")
    }


def _upload(console, batch_id: int, picture: bytes):
    return console.form(
        f"/maker/batches/{batch_id}/images",
        {"alt": "The bottle", "image": (io.BytesIO(picture), "a.png")},
        content_type="multipart/form-data",
    )


def test_an_upload_goes_to_the_bucket_and_is_served_from_it(
    console, client, maker, s3_server, bucket
):
    batch = make_batch(make_product(maker), live=False)

    assert _upload(console, batch.id, image_bytes("PNG", (120, 80))).status_code == 303

    image = db.session.scalar(select(BatchImage))
    assert s3_server.keys(bucket) == [f"images/{image.digest}"]
    stored = db.session.get(ImageBlob, image.digest)
    assert stored.data is None and stored.content_type == "image/png" and stored.size > 0
    served = client.get(f"/media/{image.filename}")
    assert served.status_code == 200 and served.mimetype == "image/png"
    assert hashlib.sha256(served.data).hexdigest() == image.digest
    assert served.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    again = client.get(
        f"/media/{image.filename}", headers={"If-None-Match": served.headers["ETag"]}
    )
    assert again.status_code == 304


def test_a_removed_picture_is_no_longer_served_and_its_object_is_left_in_the_bucket(
    console, client, maker, s3_server, bucket
):
    batch = make_batch(make_product(maker), live=False)
    _upload(console, batch.id, image_bytes("PNG"))
    image = db.session.scalar(select(BatchImage))
    image_id, name, digest = image.id, image.filename, image.digest

    console.form(f"/maker/images/{image_id}/delete")

    assert client.get(f"/media/{name}").status_code == 404
    assert db.session.get(ImageBlob, digest) is None
    assert s3_server.keys(bucket) == [f"images/{digest}"]  # an orphan, as documented


def test_images_migrate_moves_files_into_the_bucket(app, runner, client, s3_server, bucket):
    old = _uploads_from_before(app, 2)
    directory = Path(app.config["SHOP_UPLOAD_DIR"])
    files = {image.filename: (directory / image.filename).read_bytes() for image in old}

    result = runner.invoke(args=["shop", "images", "migrate"])

    assert result.exit_code == 0, result.output
    assert "2 moved into the s3 store, 0 already there, 0 missing" in result.output
    digests = sorted(hashlib.sha256(data).hexdigest() for data in files.values())
    assert s3_server.keys(bucket) == [f"images/{digest}" for digest in digests]
    for path in directory.iterdir():
        path.unlink()
    for name, data in files.items():
        assert client.get(f"/media/{name}").data == data


@pytest.fixture
def unreachable_bucket(app_overrides):
    """The same settings, pointed at a port nobody listens on."""
    from testkit.servers import free_port

    app_overrides["SHOP_S3_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    return app_overrides


def test_an_upload_while_the_bucket_is_down_is_refused_clearly_and_stores_nothing(
    unreachable_bucket, console, maker
):
    batch = make_batch(make_product(maker), live=False)

    response = _upload(console, batch.id, image_bytes("PNG"))

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert "be stored or shown right now. Nothing was saved" in response.get_data(as_text=True)
    assert db.session.scalar(select(BatchImage)) is None
    assert db.session.scalar(select(ImageBlob)) is None


def test_a_picture_asked_for_while_the_bucket_is_down_gets_503_not_an_error(
    unreachable_bucket, client
):
    digest = "ab" * 32
    db.session.add(ImageBlob(digest=digest, content_type="image/png", size=10, data=None))
    db.session.commit()

    response = client.get(f"/media/{digest}.png")

    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
