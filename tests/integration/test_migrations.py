from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shop.extensions import db


def test_the_migrations_create_exactly_the_models_schema(app):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_the_database_refuses_to_oversell_even_without_the_application(app):
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from tests.support.factories import make_batch

    batch = make_batch(edition_size=3)
    db.session.commit()
    try:
        db.session.execute(text("UPDATE batches SET held = 4 WHERE id = :id"), {"id": batch.id})
        db.session.commit()
        raised = False
    except IntegrityError:
        db.session.rollback()
        raised = True
    assert raised
