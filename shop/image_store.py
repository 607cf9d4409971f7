"""Where the bytes of batch images live, so that every app host serves every picture.

In the database by default (``image_blobs.data``), or with ``SHOP_IMAGE_STORE=s3`` in an
S3-compatible bucket through boto3. Either way one ``image_blobs`` row per content says what
exists, and ``batch_images.digest`` references it.

Content-addressed: bytes are stored once, under their SHA-256, however many batches show them.
A row goes when the last picture showing it is removed, and the foreign key from
``batch_images`` settles a removal racing an upload of the same bytes. An object in a bucket is
never removed: no lock spans the database and the bucket, so a removal could delete the bytes
a parallel upload has just relied on. Such orphans are harmless (docs/OPERATIONS.md).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from shop.errors import ImagesUnavailable
from shop.extensions import db
from shop.models import BatchImage, ImageBlob

DATABASE = "database"
S3 = "s3"
# Names given to uploads before content addressing: 32 random hex digits.
_LEGACY_NAME = re.compile(r"[a-f0-9]{32}\.(jpg|png|webp)")
_BUCKET_LOCK = threading.Lock()
log = logging.getLogger(__name__)


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(data: bytes, content_type: str) -> str:
    """Store ``data`` in the caller's transaction (once per content) and return its digest.

    The row is locked against removal (``FOR KEY SHARE``) until the caller commits, so a
    parallel removal of the last picture with the same bytes cannot take them away meanwhile.
    In a bucket the object is written first: a committed row never names missing bytes.
    """
    digest = digest_of(data)
    bucket = _bucket()
    if bucket is not None:
        bucket.put(digest, data, content_type)
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for _attempt in range(3):
        db.session.execute(
            insert(ImageBlob)
            .values(
                digest=digest,
                content_type=content_type,
                size=len(data),
                data=None if bucket is not None else data,
            )
            .on_conflict_do_nothing(index_elements=["digest"])
        )
        pinned = db.session.scalar(
            select(ImageBlob.digest)
            .where(ImageBlob.digest == digest)
            .with_for_update(key_share=True)
        )
        if pinned is not None:
            return digest
        # A removal committed between the insert finding the row and the lock: insert again.
    raise RuntimeError(f"image {digest} could not be stored")


def release(digest: str | None) -> None:
    """Delete stored bytes no picture shows any more. Call after deleting a ``batch_images``
    row, in the same transaction; bytes another picture still shows stay."""
    if digest is None:
        return
    try:
        with db.session.begin_nested():
            db.session.execute(
                delete(ImageBlob)
                .where(ImageBlob.digest == digest)
                .where(~exists().where(BatchImage.digest == digest))
                .execution_options(synchronize_session=False)
            )
    except IntegrityError:
        pass  # an upload of the same bytes committed in the meantime: they are shown again


@dataclass(frozen=True)
class Found:
    content_type: str
    data: bytes


def read(digest: str) -> Found | None:
    """The stored bytes and their content type, or None when nothing is stored under it."""
    row = db.session.execute(
        select(ImageBlob.content_type, ImageBlob.data).where(ImageBlob.digest == digest)
    ).first()
    if row is None:
        return None
    if row.data is not None:
        return Found(row.content_type, row.data)
    bucket = _bucket()
    data = bucket.get(digest) if bucket is not None else None
    return Found(row.content_type, data) if data is not None else None


def digest_for_name(filename: str) -> str | None:
    """The digest behind a name an upload was given before content addressing, once moved."""
    return db.session.scalar(
        select(BatchImage.digest)
        .where(BatchImage.filename == filename, BatchImage.digest.is_not(None))
        .limit(1)
    )


# --- uploads from before: files in SHOP_UPLOAD_DIR ----------------------------------------


def waiting() -> list[int]:
    """Pictures whose bytes are still only a file in SHOP_UPLOAD_DIR."""
    return list(
        db.session.scalars(
            select(BatchImage.id).where(BatchImage.digest.is_(None)).order_by(BatchImage.id)
        )
    )


def already_stored() -> int:
    return db.session.scalar(
        select(func.count(BatchImage.id)).where(BatchImage.digest.is_not(None))
    )


MOVED, ALREADY, MISSING = "moved", "already", "missing"


def move_upload(image_id: int, directory: Path) -> str:
    """Store the file of one picture from before and point the picture at it: ``MOVED``,
    ``ALREADY`` (it was, or a parallel run did it), or ``MISSING`` (no such file in
    ``directory``). The caller commits; the picture is taken only while it has no digest."""
    image = db.session.get(BatchImage, image_id)
    if image is None or image.digest is not None:
        return ALREADY
    path = directory / image.filename
    if not _LEGACY_NAME.fullmatch(image.filename) or not path.is_file():
        return MISSING
    digest = put(path.read_bytes(), image.content_type)
    taken = db.session.execute(
        update(BatchImage)
        .where(BatchImage.id == image_id, BatchImage.digest.is_(None))
        .values(digest=digest)
        .execution_options(synchronize_session=False)
    )
    return MOVED if taken.rowcount == 1 else ALREADY


# --- an S3-compatible bucket --------------------------------------------------------------


class Bucket:
    """Objects named ``<prefix><digest>`` in one bucket, through a boto3 S3 client. A bucket
    that fails or does not answer in time is :class:`ImagesUnavailable` (503), never a 500."""

    def __init__(self, client, name: str, prefix: str) -> None:
        self.client = client
        self.name = name
        self.prefix = prefix

    def key(self, digest: str) -> str:
        return f"{self.prefix}{digest}"

    def put(self, digest: str, data: bytes, content_type: str) -> None:
        with self._answering("put"):
            self.client.put_object(
                Bucket=self.name,
                Key=self.key(digest),
                Body=data,
                ContentType=content_type,
                CacheControl="public, max-age=31536000, immutable",
            )

    def get(self, digest: str) -> bytes | None:
        """The object's bytes, or None when the bucket has no such object."""
        with self._answering("get"):
            try:
                response = self.client.get_object(Bucket=self.name, Key=self.key(digest))
            except self.client.exceptions.NoSuchKey:
                return None
            with response["Body"] as body:
                return body.read()

    @contextmanager
    def _answering(self, operation: str) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError) as error:
            log.warning("image bucket %s %s failed: %s", self.name, operation, error)
            raise ImagesUnavailable() from error


def _bucket() -> Bucket | None:
    """This app's bucket when ``SHOP_IMAGE_STORE=s3``; one client per process, made on first
    use (after gunicorn forks, never by ``create_app``)."""
    config = current_app.config
    if config.get("SHOP_IMAGE_STORE", DATABASE) != S3:
        return None
    bucket = current_app.extensions.get("shop.image_bucket")
    if bucket is not None:
        return bucket
    with _BUCKET_LOCK:
        bucket = current_app.extensions.get("shop.image_bucket")
        if bucket is None:
            bucket = Bucket(_client(config), config["SHOP_S3_BUCKET"], config["SHOP_S3_PREFIX"])
            current_app.extensions["shop.image_bucket"] = bucket
    return bucket


def _client(config):
    import boto3  # only a shop that stores images in a bucket needs it loaded
    from botocore.config import Config as BotoConfig

    endpoint = config.get("SHOP_S3_ENDPOINT_URL")
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=config.get("SHOP_S3_REGION"),
        config=BotoConfig(
            connect_timeout=config.get("SHOP_S3_CONNECT_TIMEOUT", 2.0),
            read_timeout=config.get("SHOP_S3_READ_TIMEOUT", 10.0),
            retries={"max_attempts": 3, "mode": "standard"},
            # Other S3-compatible servers (MinIO, Ceph, …) want the bucket in the path.
            s3={"addressing_style": "path" if endpoint else "auto"},
        ),
    )
