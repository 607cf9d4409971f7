"""Where the bytes of batch images live, so that every app host serves every picture: in the
database (``image_blobs``), and ``batch_images.digest`` references them.

Content-addressed: bytes are stored once, under their SHA-256, however many batches show them.
A row goes when the last picture showing it is removed, and the foreign key from
``batch_images`` settles a removal racing an upload of the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from shop.extensions import db
from shop.models import BatchImage, ImageBlob

# Names given to uploads before content addressing: 32 random hex digits.
_LEGACY_NAME = re.compile(r"[a-f0-9]{32}\.(jpg|png|webp)")


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put(data: bytes, content_type: str) -> str:
    """Store ``data`` in the caller's transaction (once per content) and return its digest.

    The row is locked against removal (``FOR KEY SHARE``) until the caller commits, so a
    parallel removal of the last picture with the same bytes cannot take them away meanwhile.
    """
    digest = digest_of(data)
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    for _attempt in range(3):
        db.session.execute(
            insert(ImageBlob)
            .values(
                digest=digest,
                content_type=content_type,
                size=len(data),
                data=data,
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
    if row is None or row.data is None:
        return None
    return Found(row.content_type, row.data)


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
