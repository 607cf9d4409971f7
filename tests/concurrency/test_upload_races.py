"""Parallel picture uploads against gunicorn (several processes with threads) and PostgreSQL:
the per-batch cap holds because the database keeps it (one UNIQUE slot per picture), and a
refused upload leaves no bytes behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from shop import clock, products
from shop.extensions import db
from shop.models import BatchImage, ImageBlob
from testkit import bursts, databases, factories, rawhttp, servers
from tests.concurrency.conftest import THREADS, WORKERS, assert_burst
from tests.support.console import image_bytes

pytestmark = pytest.mark.concurrency

ALREADY = 6  # pictures the batch has before the burst
PARALLEL = 12  # uploads in the burst: twice the slots left


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def upload_app(race_database_url, upload_dir):
    app = databases.make_app(race_database_url, SHOP_UPLOAD_DIR=str(upload_dir))
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="module")
def upload_server(race_database_url, upload_dir) -> Iterator[servers.Server]:
    with servers.start_gunicorn(
        race_database_url,
        workers=WORKERS,
        threads=THREADS,
        extra_env={"SHOP_UPLOAD_DIR": str(upload_dir)},
    ) as server:
        yield server


def batch_with_pictures(app, count: int) -> tuple[str, int]:
    """A maker's batch that already has ``count`` pictures; the maker's email and batch id."""
    with app.app_context(), app.test_request_context():
        maker = factories.make_maker()
        batch = factories.make_batch(factories.make_product(maker))
        for n in range(count):
            products.add_image(
                batch, image_bytes(), alt=f"Picture {n}", actor=maker, now=clock.now()
            )
        db.session.commit()
        seeded = (maker.email, batch.id)
        db.session.remove()
    return seeded


def pictures_of(app, batch_id: int) -> list[BatchImage]:
    with app.app_context():
        found = list(db.session.scalars(select(BatchImage).where(BatchImage.batch_id == batch_id)))
        db.session.expunge_all()
        db.session.remove()
    return found


def stored_and_shown(app) -> tuple[set[str], set[str]]:
    """The digests of the stored bytes, and those the pictures show."""
    with app.app_context():
        stored = set(db.session.scalars(select(ImageBlob.digest)))
        shown = set(db.session.scalars(select(BatchImage.digest)))
        db.session.remove()
    return stored, shown


@pytest.mark.parametrize("repetition", range(3))
def test_parallel_uploads_never_give_a_batch_more_pictures_than_the_cap(
    upload_app, upload_server, upload_dir, repetition
):
    email, batch_id = batch_with_pictures(upload_app, ALREADY)
    maker = rawhttp.login(upload_server.address, email, page=f"/maker/batches/{batch_id}")
    picture = image_bytes("JPEG", (1600, 1200))

    outcome = bursts.burst(
        upload_server.address,
        [maker.image_upload_request(batch_id, picture) for _ in range(PARALLEL)],
    )

    left = products.MAX_IMAGES_PER_BATCH - ALREADY
    assert_burst(
        outcome, upload_server, won=left, lost=PARALLEL - left, status=422, saying="up to 12 images"
    )
    pictures = pictures_of(upload_app, batch_id)
    assert len(pictures) == products.MAX_IMAGES_PER_BATCH
    assert sorted(p.slot for p in pictures) == list(range(products.MAX_IMAGES_PER_BATCH))
    # A refused upload stored nothing of its own: every stored picture is shown by a batch.
    stored, shown = stored_and_shown(upload_app)
    assert stored == shown
    assert list(upload_dir.iterdir()) == []  # and nothing is written to a host's disk
