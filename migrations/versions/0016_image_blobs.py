"""image_blobs: batch images stored in the database, once per content, for every app host

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 09:00:00

Uploaded pictures lived as files in SHOP_UPLOAD_DIR, on one host's disk: a second app host could
not serve them. Their bytes now live in ``image_blobs`` (or, with SHOP_IMAGE_STORE=s3, in a
bucket, the row keeping only what is known of them), keyed by the SHA-256 of the re-encoded
bytes; ``batch_images.digest`` references the row. Existing pictures keep their files and a
NULL digest until ``flask shop images migrate`` moves them in. ``filename`` is no longer unique:
two batches showing the same picture share its content and its name.
"""

import sqlalchemy as sa
from alembic import op


revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "image_blobs",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("size >= 0", name=op.f("ck_image_blobs_size_not_negative")),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_image_blobs")),
    )
    with op.batch_alter_table("batch_images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("digest", sa.String(length=64), nullable=True))
        batch_op.drop_constraint(batch_op.f("uq_batch_images_filename"), type_="unique")
        batch_op.create_index(batch_op.f("ix_batch_images_filename"), ["filename"], unique=False)
        batch_op.create_index(batch_op.f("ix_batch_images_digest"), ["digest"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_batch_images_digest_image_blobs"), "image_blobs", ["digest"], ["digest"]
        )


def downgrade():
    with op.batch_alter_table("batch_images", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_batch_images_digest_image_blobs"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_batch_images_digest"))
        batch_op.drop_index(batch_op.f("ix_batch_images_filename"))
        batch_op.create_unique_constraint(batch_op.f("uq_batch_images_filename"), ["filename"])
        batch_op.drop_column("digest")
    op.drop_table("image_blobs")
