"""Two app hosts on one PostgreSQL, each a gunicorn master with an instance folder of its own:
a picture uploaded through one is served by the other, with year-long caching and a 304 for a
browser or proxy that already has it. Nothing is written to either host's disk. Both stores:
the database, and an S3-compatible bucket (moto's server, over HTTP)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from shop.extensions import db
from shop.models import BatchImage
from testkit import factories, rawhttp, servers
from tests.support.console import image_bytes


@pytest.fixture(scope="module", params=["database", "s3"])
def two_hosts(
    request, ops_database_url, tmp_path_factory
) -> Iterator[list[tuple[servers.Server, Path]]]:
    store: dict[str, str] = {}
    if request.param == "s3":
        s3_server = request.getfixturevalue("s3_server")
        store = s3_server.settings(s3_server.new_bucket())
    hosts = []
    try:
        for name in ("a", "b"):
            instance = tmp_path_factory.mktemp(f"host-{name}")
            server = servers.start_gunicorn(
                ops_database_url,
                workers=2,
                threads=2,
                extra_env={
                    "SHOP_UPLOAD_DIR": str(instance / "uploads"),
                    "SHOP_MAILBOX_DIR": str(instance / "mailbox"),
                    "SHOP_CERTIFICATE_KEY_FILE": str(instance / "certificate_key.pem"),
                    **store,
                },
                ready_path="/healthz",
            )
            hosts.append((server, instance))
        yield hosts
    finally:
        for server, _instance in hosts:
            server.stop()


def _maker_with_batch(app) -> tuple[str, int]:
    with app.app_context():
        maker = factories.make_maker()
        batch = factories.make_batch(factories.make_product(maker), live=False)
        db.session.commit()
        found = (maker.email, batch.id)
        db.session.remove()
    return found


def _picture_name(app, batch_id: int) -> str:
    with app.app_context():
        name = db.session.scalar(select(BatchImage.filename).where(BatchImage.batch_id == batch_id))
        db.session.remove()
    return name


def _get(server: servers.Server, path: str, **headers: str) -> rawhttp.Response:
    return rawhttp.send_raw(
        server.address, rawhttp.build_request(server.address, "GET", path, headers=headers)
    )


def test_a_picture_uploaded_through_one_host_is_served_by_the_other(ops_app, two_hosts):
    (host_a, folder_a), (host_b, folder_b) = two_hosts
    email, batch_id = _maker_with_batch(ops_app)
    maker = rawhttp.login(host_a.address, email, page=f"/maker/batches/{batch_id}")

    uploaded = maker.upload_image(batch_id, image_bytes("JPEG", (800, 600)))

    assert uploaded.status == 303, uploaded.text[:500]
    name = _picture_name(ops_app, batch_id)
    served = _get(host_b, f"/media/{name}")
    assert served.status == 200, served.text[:300]
    assert served.headers["content-type"] == "image/jpeg"
    assert name == f"{hashlib.sha256(served.body).hexdigest()}.jpg"
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert served.headers["etag"] == f'"{name.split(".")[0]}"'
    assert _get(host_a, f"/media/{name}").body == served.body
    for folder in (folder_a, folder_b):
        assert not (folder / "uploads").exists() or list((folder / "uploads").iterdir()) == []


def test_a_host_answers_304_to_a_client_that_has_the_picture(ops_app, two_hosts):
    (host_a, _), (host_b, _) = two_hosts
    email, batch_id = _maker_with_batch(ops_app)
    maker = rawhttp.login(host_b.address, email, page=f"/maker/batches/{batch_id}")
    maker.upload_image(batch_id, image_bytes("PNG", (300, 200)))
    name = _picture_name(ops_app, batch_id)
    etag = _get(host_b, f"/media/{name}").headers["etag"]

    again = _get(host_a, f"/media/{name}", **{"If-None-Match": etag})

    assert again.status == 304 and again.body == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "public, max-age=31536000, immutable"
