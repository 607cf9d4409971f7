import sqlite3

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade
from sqlalchemy import text

from shop import create_app
from shop.extensions import db
from testkit import databases


def test_the_migrations_create_exactly_the_models_schema(app):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_the_database_refuses_to_oversell_even_without_the_application(app):
    from sqlalchemy.exc import IntegrityError

    from testkit.factories import make_batch

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


def _a_maker_and_a_product(raw: sqlite3.Connection) -> None:
    """Maker 1 and their product 1, as every schema since 0001 holds them."""
    raw.execute(
        "INSERT INTO users (id, email, password_hash, display_name, role, is_admin,"
        " timezone, session_token, created_at) VALUES (1, 'm@example.com', 'x', 'M',"
        " 'maker', 0, 'UTC', 't', '2026-11-01 00:00:00')"
    )
    raw.execute(
        "INSERT INTO products (id, maker_id, name, slug, description, created_at)"
        " VALUES (1, 1, 'Rye', 'rye', '', '2026-11-01 00:00:00')"
    )


def test_existing_batches_keep_their_singular_when_the_unit_gets_a_name_for_one(tmp_path):
    path = tmp_path / "before.sqlite3"
    app = create_app(databases.testing_config(f"sqlite:///{path}"))
    with app.app_context():
        upgrade(revision="0002")
        with sqlite3.connect(path) as raw:  # the rows as the app before 0003 wrote them
            _a_maker_and_a_product(raw)
            raw.executemany(
                "INSERT INTO batches (id, product_id, number, edition_size, unit_label, price,"
                " currency, per_customer_limit, story, summary, origin_place, inputs, process,"
                " sold, held, created_at) VALUES (?, 1, ?, 10, ?, 100, 'usd', 2, '', '', '',"
                " '', '', 0, 0, '2026-11-01 00:00:00')",
                [(1, 1, "bottles"), (2, 2, "kg"), (3, 3, "s")],
            )
        upgrade()
        names = db.session.execute(
            text("SELECT unit_singular, unit_label FROM batches ORDER BY id")
        ).all()
        db.engine.dispose()

    assert [tuple(row) for row in names] == [("bottle", "bottles"), ("kg", "kg"), ("s", "s")]


def test_existing_pictures_get_slots_in_their_shown_order_and_none_are_lost(tmp_path):
    path = tmp_path / "before.sqlite3"
    app = create_app(databases.testing_config(f"sqlite:///{path}"))
    with app.app_context():
        upgrade(revision="0008")
        with sqlite3.connect(path) as raw:  # a batch with 13 pictures, as the upload race left
            _a_maker_and_a_product(raw)
            raw.execute(
                "INSERT INTO batches (id, product_id, number, edition_size, unit_label,"
                " unit_singular, price, currency, per_customer_limit, story, summary,"
                " origin_place, inputs, process, sold, held, ships_to, created_at) VALUES"
                " (1, 1, 1, 10, 'bottles', 'bottle', 100, 'usd', 2, '', '', '', '', '', 0, 0,"
                " '', '2026-11-01 00:00:00')"
            )
            raw.executemany(
                "INSERT INTO batch_images (id, batch_id, filename, content_type, width, height,"
                " alt, position, created_at) VALUES (?, 1, ?, 'image/jpeg', 1, 1, '', ?,"
                " '2026-11-01 00:00:00')",
                [(n, f"{n:032x}.jpg", 11 - n if n < 12 else 0) for n in range(13)],
            )
        upgrade()
        slots = db.session.execute(
            text("SELECT id, slot FROM batch_images ORDER BY position, id")
        ).all()
        db.engine.dispose()

    assert [slot for _, slot in slots] == list(range(13))
    assert [image_id for image_id, _ in slots][:3] == [11, 12, 10]


def test_accounts_that_already_share_a_mailbox_keep_working_and_the_oldest_owns_it(tmp_path):
    path = tmp_path / "before.sqlite3"
    app = create_app(databases.testing_config(f"sqlite:///{path}"))
    with app.app_context():
        upgrade(revision="0011")
        with sqlite3.connect(path) as raw:  # three accounts of one inbox, made before the rule
            raw.executemany(
                "INSERT INTO users (id, email, password_hash, display_name, role, is_admin,"
                " timezone, session_token, created_at, tax_mode) VALUES (?, ?, 'x', 'A',"
                " 'customer', 0, 'UTC', ?, '2026-11-01 00:00:00', 'off')",
                [
                    (1, "ann+2@gmail.com", "t1"),
                    (2, "a.nn@gmail.com", "t2"),
                    (3, "bob@example.com", "t3"),
                    (4, "ann@googlemail.com", "t4"),
                ],
            )
        upgrade()
        rows = db.session.execute(text("SELECT id, mailbox FROM users ORDER BY id")).all()
        db.engine.dispose()

    assert [tuple(row) for row in rows] == [
        (1, "ann@gmail.com"),
        (2, None),
        (3, "bob@example.com"),
        (4, None),
    ]


def test_existing_audit_entries_get_their_maker_and_the_command_lines_become_cli(tmp_path):
    path = tmp_path / "before.sqlite3"
    app = create_app(databases.testing_config(f"sqlite:///{path}"))
    with app.app_context():
        upgrade(revision="0013")
        with sqlite3.connect(path) as raw:  # what the console and the CLI recorded before 0014
            _a_maker_and_a_product(raw)
            raw.execute(
                "INSERT INTO drops (id, maker_id, title, slug, story, state, suspended,"
                " allow_promotion_codes, created_at) VALUES (1, 1, 'W', 'w', '', 'open', 0, 0,"
                " '2026-11-01 00:00:00')"
            )
            raw.execute(
                "INSERT INTO batches (id, product_id, drop_id, number, edition_size, unit_label,"
                " unit_singular, price, currency, per_customer_limit, story, summary,"
                " origin_place, inputs, process, sold, held, ships_to, created_at) VALUES"
                " (1, 1, 1, 1, 10, 'bottles', 'bottle', 100, 'usd', 2, '', '', '', '', '', 0, 0,"
                " '', '2026-11-01 00:00:00')"
            )
            raw.executemany(
                "INSERT INTO audit_entries (id, actor_id, drop_id, batch_id, action, detail,"
                " created_at) VALUES (?, ?, ?, ?, ?, '', '2026-11-01 00:00:00')",
                [
                    (1, None, 1, None, "drop.opened"),
                    (2, 1, None, 1, "batch.edited"),
                    (3, 1, None, None, "maker invited"),
                ],
            )
        upgrade()
        rows = db.session.execute(
            text("SELECT id, actor_kind, maker_id, product_id FROM audit_entries ORDER BY id")
        ).all()
        db.engine.dispose()

    assert [tuple(row) for row in rows] == [
        (1, "cli", 1, None),
        (2, "person", 1, 1),
        (3, "person", None, None),
    ]
