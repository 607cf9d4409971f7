"""Parallel picture uploads against gunicorn (several processes with threads) and PostgreSQL:
the per-batch cap holds because the database keeps it (one UNIQUE slot per picture), and a
refused upload leaves no bytes behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, select

from shop import clock, image_store, products
from shop.extensions import db
from shop.models import Batch, BatchImage, ImageBlob, User
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


def batches_of(app, email: str, count: int) -> list[int]:
    """``count`` new batches of the maker with ``email``, with no picture."""
    with app.app_context():
        maker = db.session.scalar(select(User).where(User.email == email))
        product = factories.make_product(maker)
        made = [factories.make_batch(product, number=n, live=False).id for n in range(1, count + 1)]
        db.session.commit()
        db.session.remove()
    return made


def test_the_last_removal_of_some_bytes_waits_for_their_upload_elsewhere_and_keeps_them(
    upload_app,
):
    """An upload has stored (found) the bytes and is about to insert its picture when the last
    batch showing the same bytes removes its own: the removal waits for the upload's lock,
    then sees the new picture (the foreign key) and keeps the bytes. Both succeed."""
    email, _ = batch_with_pictures(upload_app, 0)
    old_batch, new_batch = batches_of(upload_app, email, 2)
    picture = image_bytes("PNG", (333, 222))
    with upload_app.app_context(), upload_app.test_request_context():
        maker = db.session.scalar(select(User).where(User.email == email))
        batch = db.session.get(Batch, old_batch)
        old_image = products.add_image(batch, picture, alt="Old", actor=maker, now=clock.now())
        db.session.commit()
        old_image_id, digest = old_image.id, old_image.digest
        db.session.remove()
    at_insert, proceed = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def pause_before_the_picture_row(_conn, _cursor, statement, *_args) -> None:
        if threading.current_thread().name == "uploader" and "INSERT INTO batch_images" in (
            statement
        ):
            at_insert.set()
            proceed.wait(20)

    def upload() -> None:
        with upload_app.app_context(), upload_app.test_request_context():
            try:
                uploader = db.session.scalar(select(User).where(User.email == email))
                batch = db.session.get(Batch, new_batch)
                products.add_image(batch, picture, alt="New", actor=uploader, now=clock.now())
                db.session.commit()
                outcomes["upload"] = "ok"
            except Exception as error:  # reported by the assertions below
                outcomes["upload"] = repr(error)
            finally:
                db.session.remove()

    def remove() -> None:
        with upload_app.app_context():
            try:
                remover = db.session.scalar(select(User).where(User.email == email))
                image = db.session.get(BatchImage, old_image_id)
                products.remove_image(image, actor=remover, now=clock.now())
                db.session.commit()
                outcomes["removal"] = "ok"
            except Exception as error:
                outcomes["removal"] = repr(error)
            finally:
                db.session.remove()

    with upload_app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", pause_before_the_picture_row)
    uploading = threading.Thread(target=upload, name="uploader")
    removing = threading.Thread(target=remove, name="remover")
    try:
        uploading.start()
        assert at_insert.wait(20), "the upload never reached its picture row"
        removing.start()
        removing.join(1.0)  # with the lock it waits; without, it would be done by now
        waited = removing.is_alive()
        proceed.set()
        uploading.join(20)
        removing.join(20)
    finally:
        proceed.set()
        event.remove(engine, "before_cursor_execute", pause_before_the_picture_row)

    assert outcomes == {"upload": "ok", "removal": "ok"}
    assert waited, "the removal did not wait for the upload holding the same bytes"
    with upload_app.app_context():
        assert image_store.read(digest) is not None
        shown = db.session.scalars(
            select(BatchImage.digest).where(BatchImage.batch_id.in_([old_batch, new_batch]))
        ).all()
        db.session.remove()
    assert shown == [digest]
