from pathlib import Path

import pytest
from sqlalchemy import func, select

from shop.extensions import db
from shop.models import Batch, Drop, Order, Product, Unit, User
from shop.models.drop import CLOSED, DRAFT
from testkit.factories import make_batch, make_drop


def _counts():
    return {
        model.__name__: db.session.scalar(select(func.count()).select_from(model))
        for model in (User, Product, Batch, Drop, Order, Unit)
    }


def test_demo_loads_a_live_a_scheduled_and_a_sold_out_drop(runner):
    result = runner.invoke(args=["shop", "demo"])
    assert result.exit_code == 0, result.output
    assert "maker@smallbatch.example" in result.output
    drops = {d.slug: d for d in db.session.scalars(select(Drop))}
    from shop import clock

    now = clock.now()
    assert drops["winter-release"].phase(now) == "live"
    assert len(drops["winter-release"].batches) == 2
    assert all(b.images and b.story for b in drops["winter-release"].batches)
    assert drops["spring-release"].phase(now) == "upcoming"
    past = drops["highland-rye-batch-6"]
    assert past.state == CLOSED
    assert all(b.sold_out and b.sold == b.edition_size for b in past.batches)


def test_demo_twice_leaves_the_same_data(runner):
    runner.invoke(args=["shop", "demo"])
    before = _counts()
    result = runner.invoke(args=["shop", "demo"])
    assert result.exit_code == 0
    assert "nothing changed" in result.output
    assert _counts() == before


def test_demo_serials_of_the_sold_out_batch_run_from_one_without_gaps(runner):
    runner.invoke(args=["shop", "demo"])
    batch = db.session.scalar(select(Batch).where(Batch.number == 6))
    serials = sorted(db.session.scalars(select(Unit.serial).where(Unit.batch_id == batch.id)))
    assert serials == list(range(1, batch.edition_size + 1))


def test_create_maker_reads_the_password_from_stdin(runner):
    result = runner.invoke(
        args=["shop", "create-maker", "Rose@Example.com", "--password-stdin"],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).where(User.email == "rose@example.com"))
    assert user is not None and user.is_maker


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("not-an-email", "a long enough password", "email address"),
        ("someone@example.com", "", "Choose a password"),
        ("someone@example.com", "short", "8 to 128"),
    ],
)
def test_create_customer_rejects_bad_input_with_one_line_and_writes_nothing(
    runner, email, password, message
):
    result = runner.invoke(
        args=["shop", "create-customer", email, "--password-stdin"], input=password + "\n"
    )
    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert _counts()["User"] == 0


def test_create_customer_refuses_a_duplicate_email_whatever_its_case(runner):
    args = ["shop", "create-customer", "dup@example.com", "--password-stdin"]
    assert runner.invoke(args=args, input="a long enough password\n").exit_code == 0
    again = runner.invoke(
        args=["shop", "create-customer", "DUP@example.com", "--password-stdin"],
        input="another password\n",
    )
    assert again.exit_code == 1
    assert "already exists" in again.output
    assert _counts()["User"] == 1


def test_the_printed_demo_logins_work(runner, client):
    from shop import demo, users

    runner.invoke(args=["shop", "demo"])
    for _role, email, password in demo.LOGINS:
        assert users.authenticate(email, password) is not None


def test_demo_reset_puts_the_demo_back_to_its_first_state(runner, app):
    runner.invoke(args=["shop", "demo"])
    first = _counts()
    winter = db.session.scalar(select(Drop).where(Drop.slug == "winter-release"))
    winter.state = CLOSED
    db.session.add(User(email="someone@example.com", password_hash="x", display_name="Someone"))
    db.session.commit()
    stray = Path(app.config["SHOP_UPLOAD_DIR"]) / "left-behind.jpg"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"old")

    result = runner.invoke(args=["shop", "demo", "--reset"])

    assert result.exit_code == 0, result.output
    assert "Demo reset" in result.output and "demo-customer-pass" in result.output
    db.session.expire_all()
    assert _counts() == first
    winter = db.session.scalar(select(Drop).where(Drop.slug == "winter-release"))
    assert winter.state != CLOSED
    assert not stray.exists()


def test_demo_reset_is_refused_in_production_and_changes_nothing(runner, app):
    runner.invoke(args=["shop", "demo"])
    before = _counts()
    app.config["ENV_NAME"] = "production"

    result = runner.invoke(args=["shop", "demo", "--reset"])

    assert result.exit_code == 1
    assert "refused in production" in result.output
    assert _counts() == before


@pytest.mark.parametrize(
    ("command", "role", "admin"),
    [
        ("create-maker", "maker", False),
        ("create-admin", "customer", True),
        ("create-customer", "customer", False),
    ],
)
def test_every_create_command_takes_a_display_name_and_makes_its_kind_of_account(
    runner, command, role, admin
):
    result = runner.invoke(
        args=["shop", command, "ada@example.com", "--name", "Ada", "--password-stdin"],
        input="a long enough password\n",
    )

    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).where(User.email == "ada@example.com"))
    assert (user.display_name, user.role, user.is_admin) == ("Ada", role, admin)


def test_open_drop_and_close_drop_schedule_a_drop_and_say_when(runner):
    drop = make_drop(state=DRAFT, opens_at=None, closes_at=None)
    make_batch(drop=drop)
    db.session.commit()

    opened = runner.invoke(
        args=["shop", "open-drop", drop.slug, "--at", "2031-01-01T09:00:00+00:00"]
    )
    closed = runner.invoke(
        args=["shop", "close-drop", drop.slug, "--at", "2031-02-01T09:00:00+00:00"]
    )

    assert opened.exit_code == 0 and closed.exit_code == 0, opened.output + closed.output
    assert opened.output == f"{drop.slug}: scheduled, opens 2031-01-01T09:00:00+00:00\n"
    assert closed.output == f"{drop.slug}: scheduled, closes 2031-02-01T09:00:00+00:00\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["open-drop", "no-such-drop"], "no drop with slug 'no-such-drop'"),
        (["close-drop", "{slug}"], "This drop is already closed."),
        (["open-drop", "{slug}"], "A closed drop stays closed — start a new drop to sell again."),
    ],
)
def test_open_drop_and_close_drop_refuse_with_one_line_and_change_nothing(runner, args, message):
    drop = make_drop(state=CLOSED)
    db.session.commit()

    result = runner.invoke(args=["shop", *(a.format(slug=drop.slug) for a in args)])

    assert result.exit_code == 1
    assert result.output == f"Error: {message}\n"
    db.session.expire_all()
    assert db.session.get(Drop, drop.id).state == CLOSED
