"""The demo shop: a distillery with a live drop, a scheduled one and a sold-out past one.

Loading is idempotent: when the demo maker exists nothing is written again.
"""

from __future__ import annotations

import io
import math
import random
from datetime import date, datetime, timedelta
from pathlib import Path

from flask import current_app
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from sqlalchemy import select

from shop import draws, images, inventory, passwords
from shop.extensions import db
from shop.models import Batch, BatchImage, Drop, Order, Product, ShippingRate, User
from shop.models.drop import CLOSED, DRAW, OPEN, SCHEDULED
from shop.models.user import CUSTOMER, MAKER, TAX_EXCLUSIVE

MAKER_EMAIL = "maker@smallbatch.example"
CUSTOMER_EMAIL = "customer@smallbatch.example"
MAKER_PASSWORD = "demo-maker-pass"  # noqa: S105 - printed demo logins  # nosec B105
CUSTOMER_PASSWORD = "demo-customer-pass"  # noqa: S105  # nosec B105
OPERATOR_EMAIL = "operator@smallbatch.example"
OPERATOR_PASSWORD = "demo-operator-pass"  # noqa: S105  # nosec B105
LOGINS = [
    ("maker", MAKER_EMAIL, MAKER_PASSWORD),
    ("customer", CUSTOMER_EMAIL, CUSTOMER_PASSWORD),
    ("operator", OPERATOR_EMAIL, OPERATOR_PASSWORD),
]

RYE_STORY = """\
Batch No. 7 began as **eleven acres of Wrens Abruzzi rye** on the Kessler farm, four miles up
the valley, sown in October 2019 and cut by hand the following July after a dry, windy spring
that kept the grain small and spicy.

We mashed it in our 600-gallon cooker over three cold mornings in January, fermented it for
**six days** on an open cypress washback (the long ferment is where the stone fruit comes
from), and ran it twice through Old Ruth, our copper pot still.

It spent five winters in 53-gallon new oak, charred #3, on the north wall of the rickhouse where
the temperature swings hardest. We tasted every barrel; eleven made it into this batch.

> Rye bread crust, dried apricot, clove — and a long finish of black pepper and honey.

Bottled at **cask strength, 118.4 proof**, unfiltered. 240 bottles, each numbered by hand.
"""

RYE_SIX_STORY = """\
Our first rye from Kessler grain: a wetter harvest, a rounder spirit. Four years in oak on the
south wall. Soft caramel, baked apple and cinnamon. 48 bottles, long gone — thank you.
"""

BRANDY_STORY = """\
Every autumn the Okafor family lets us glean the **Roxbury Russet and Golden Russet** trees
their grandfather planted in 1961. In 2021 we pressed 4.2 tonnes of fruit by hand, fermented
the cider wild in old wine barrels, and distilled it in February when it was bone dry.

Four years in used rye casks gave it a little of Batch No. 5's spice. It tastes like
*the orchard on a cold morning*: baked apple, pear skin, a little smoke.

120 bottles at 92 proof. Drink it neat or with one cube of ice.
"""

BRANDY_FOUR_STORY = """\
Next spring: the 2022 russet harvest, aged in French oak that once held a Sauternes.
Expect honey, quince and white flowers. 150 bottles.
"""


def reset(*, now: datetime) -> None:
    """Every row of every table deleted, stored uploads removed, and the demo loaded afresh:
    the shop as `make run` first showed it. The caller commits; never for production."""
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    uploads = current_app.config.get("SHOP_UPLOAD_DIR")
    if uploads and Path(uploads).is_dir():
        for stored in Path(uploads).iterdir():
            if stored.is_file():
                stored.unlink()
    db.session.flush()
    load(now=now)


def load(*, now: datetime) -> bool:
    """Create the demo data once; True when anything was written."""
    if db.session.scalar(select(User).where(User.email == MAKER_EMAIL)) is not None:
        return False
    maker = User(
        email=MAKER_EMAIL,
        password_hash=passwords.hash_password(MAKER_PASSWORD),
        display_name="Ada Marsh · Marsh Hollow Distillery",
        role=MAKER,
        timezone="America/New_York",
        email_verified_at=now,  # the demo's own addresses: nothing to confirm
        tax_mode=TAX_EXCLUSIVE,  # Stripe Tax adds tax at Checkout (the emulator: a rate by country)
    )
    customer = User(
        email=CUSTOMER_EMAIL,
        password_hash=passwords.hash_password(CUSTOMER_PASSWORD),
        display_name="Sam Rivera",
        role=CUSTOMER,
        email_verified_at=now,
    )
    operator = User(
        email=OPERATOR_EMAIL,
        password_hash=passwords.hash_password(OPERATOR_PASSWORD),
        display_name="Robin Hale · Small Batch",
        role=CUSTOMER,
        is_admin=True,
        email_verified_at=now,
    )
    db.session.add_all([maker, customer, operator])
    db.session.flush()

    rye = Product(
        maker_id=maker.id,
        name="Highland Rye",
        slug="highland-rye",
        description="A cask-strength rye whiskey from grain grown four miles up the valley.",
    )
    brandy = Product(
        maker_id=maker.id,
        name="Orchard Apple Brandy",
        slug="orchard-apple-brandy",
        description="Apple brandy from heirloom russets gleaned by hand.",
    )
    db.session.add_all([rye, brandy])
    db.session.flush()

    past = Drop(
        maker_id=maker.id,
        title="Highland Rye, Batch No. 6",
        slug="highland-rye-batch-6",
        story="Our first Kessler-grain rye. Sold out in minutes — thank you.",
        state=OPEN,
        opens_at=now - timedelta(days=62),
    )
    live = Drop(
        maker_id=maker.id,
        title="The Winter Release",
        slug="winter-release",
        story=(
            "Two spirits we have waited five winters for: the spiciest rye we have made, and "
            "an apple brandy from trees planted in 1961. **Bottles are held for you while you "
            "pay**, and every one carries its number."
        ),
        state=OPEN,
        opens_at=now - timedelta(hours=2),
        closes_at=now + timedelta(days=3),
        allow_promotion_codes=True,
    )
    spring = Drop(
        maker_id=maker.id,
        title="The Spring Release",
        slug="spring-release",
        story="The 2022 russet harvest, finished in Sauternes oak.",
        state=SCHEDULED,
        opens_at=now + timedelta(days=5),
    )
    db.session.add_all([past, live, spring])
    db.session.flush()

    rye_six = _batch(
        rye,
        past,
        6,
        48,
        8900,
        4,
        RYE_SIX_STORY,
        "Kessler Farm, Marsh Hollow valley",
        date(2019, 2, 11),
        "Wrens Abruzzi rye (80%), malted barley (20%)",
        "Double pot-distilled; 4 years in new charred oak",
    )
    rye_seven = _batch(
        rye,
        live,
        7,
        240,
        9500,
        2,
        RYE_STORY,
        "Kessler Farm, Marsh Hollow valley",
        date(2021, 1, 19),
        "Wrens Abruzzi rye (85%), malted barley (15%)",
        "Six-day open ferment; double pot-distilled; 5 years in #3-char new oak",
    )
    brandy_three = _batch(
        brandy,
        live,
        3,
        120,
        7200,
        2,
        BRANDY_STORY,
        "Okafor Orchard, Fenwick",
        date(2022, 2, 8),
        "Roxbury Russet and Golden Russet apples",
        "Wild-fermented cider; pot-distilled; 4 years in ex-rye casks",
    )
    brandy_four = _batch(
        brandy,
        spring,
        4,
        150,
        7800,
        2,
        BRANDY_FOUR_STORY,
        "Okafor Orchard, Fenwick",
        date(2023, 2, 20),
        "Golden Russet apples",
        "Pot-distilled; 3 years in ex-Sauternes French oak",
    )
    _spirits_terms(rye_seven)
    for batch, palette in (
        (rye_six, ((92, 52, 24), (200, 140, 70))),
        (rye_seven, ((70, 38, 20), (214, 150, 74))),
        (brandy_three, ((120, 70, 30), (231, 190, 110))),
        (brandy_four, ((140, 100, 50), (240, 214, 150))),
    ):
        _add_image(batch, palette, f"{batch.product.name}, Batch No. {batch.number}")
    db.session.flush()

    _sell_out_past_drop(rye_six, past, customer)
    _draws(maker, customer, now)
    return True


def _draws(maker: User, customer: User, now: datetime) -> None:
    """A cellar rye sold by draw: Batch No. 1 drawn a week ago (every winner paid; check it at
    /drops/cellar-draw/draw), and Batch No. 2's draw announced, entries opening in two days."""
    cellar = Product(
        maker_id=maker.id,
        name="Cellar Reserve Rye",
        slug="cellar-reserve-rye",
        description="Single casks we kept back: a few bottles each, sold by draw.",
    )
    db.session.add(cellar)
    drawn = _draw_drop(maker, "The Cellar Draw", "cellar-draw", now - timedelta(days=10))
    upcoming = _draw_drop(
        maker, "The Second Cellar Draw", "second-cellar-draw", now + timedelta(days=2)
    )
    db.session.flush()
    first = _batch(cellar, drawn, 1, 12, 18000, 2, CELLAR_STORY, *CELLAR_FACTS)
    second = _batch(cellar, upcoming, 2, 18, 19500, 2, CELLAR_STORY, *CELLAR_FACTS)
    for batch, palette in (
        (first, ((60, 30, 18), (190, 120, 60))),
        (second, ((50, 26, 16), (180, 110, 56))),
    ):
        _add_image(batch, palette, f"{batch.product.name}, Batch No. {batch.number}")
    collectors = db.session.scalars(
        select(User).where(User.email.like("collector%")).order_by(User.id)
    ).all()
    for n, entrant in enumerate([customer, *collectors]):
        at = drawn.opens_at + timedelta(hours=n + 1)
        draws.enter(drawn, first.id, 2, customer=entrant, now=at)
    db.session.flush()
    draws.run_draw(drawn, now=drawn.closes_at)
    for order in db.session.scalars(select(Order).where(Order.batch_id == first.id)):
        at = drawn.closes_at + timedelta(hours=2)
        inventory.confirm(order, now=at, customer_email=order.customer.email)


def _draw_drop(maker: User, title: str, slug: str, opens_at: datetime) -> Drop:
    seed = draws.new_seed()
    drop = Drop(
        maker_id=maker.id,
        title=title,
        slug=slug,
        story="Twelve to eighteen bottles a cask: too few for a race. Enter while it is open; "
        "the draw decides, and anyone can check it.",
        state=SCHEDULED,
        mode=DRAW,
        opens_at=opens_at,
        closes_at=opens_at + timedelta(days=3),
        draw_seed=seed,
        draw_commitment=draws.commitment_of(seed),
    )
    db.session.add(drop)
    return drop


CELLAR_STORY = """\
One cask from the 2017 harvest, kept back in the north corner of the rickhouse where it stays
coolest. Bottled at cask strength, unfiltered.
"""
CELLAR_FACTS = (
    "Kessler Farm, Marsh Hollow valley",
    date(2017, 3, 2),
    "Wrens Abruzzi rye (100%)",
    "Pot-distilled; 7 years in one new charred oak cask",
)

SUMMARIES = {  # one line each, so a page never shows the story's opening twice
    ("highland-rye", 6): "Our first rye from Kessler grain: rounder and softer. Long gone.",
    ("highland-rye", 7): "Cask-strength rye from eleven acres up the valley, five winters in oak.",
    ("orchard-apple-brandy", 3): "Heirloom russets from a 1961 orchard, aged in our rye casks.",
    ("orchard-apple-brandy", 4): "Honey, quince and white flowers: russets aged in Sauternes oak.",
    ("cellar-reserve-rye", 1): "One cask, twelve bottles, drawn among everyone who entered.",
    ("cellar-reserve-rye", 2): "The next single cask: eighteen bottles, by draw.",
}


def _batch(product, drop, number, size, price, limit, story, place, produced, inputs, process):
    batch = Batch(
        product_id=product.id,
        drop_id=drop.id,
        number=number,
        edition_size=size,
        unit_label="bottles",
        unit_singular="bottle",
        price=price,
        currency="usd",
        per_customer_limit=limit,
        story=story,
        summary=SUMMARIES[(product.slug, number)],
        origin_place=place,
        produced_on=produced,
        inputs=inputs,
        process=process,
    )
    batch.product = product
    db.session.add(batch)
    db.session.flush()
    return batch


def _spirits_terms(batch: Batch) -> None:
    """The rules of selling a spirit, shown on the demo's rye: 21+, four countries, and its own
    shipping rates (the US by ground, free from $250; Europe and the UK by courier)."""
    batch.minimum_age = 21
    batch.ships_to = "DE,FR,GB,US"
    batch.tax_code = "txcd_99999999"  # Stripe's general tangible goods
    maker_id = batch.product.maker_id
    db.session.add_all(
        [
            ShippingRate(
                maker_id=maker_id,
                batch_id=batch.id,
                name="US ground",
                countries="US",
                amount=1200,
                currency=batch.currency,
                free_above=25000,
                min_days=3,
                max_days=5,
            ),
            ShippingRate(
                maker_id=maker_id,
                batch_id=batch.id,
                name="Europe and the UK by courier",
                countries="DE,FR,GB",
                amount=2900,
                currency=batch.currency,
                min_days=6,
                max_days=10,
            ),
        ]
    )


def _add_image(batch: Batch, palette, alt: str) -> None:
    shape = "decanter" if "brandy" in batch.product.slug else "bottle"
    stored = images.store(_bottle_picture(batch.number, *palette, shape=shape))
    db.session.add(
        BatchImage(
            batch_id=batch.id,
            filename=stored.filename,
            digest=stored.digest,
            content_type=stored.content_type,
            width=stored.width,
            height=stored.height,
            alt=alt,
            slot=0,
        )
    )


def _bottle_picture(number: int, dark, light, size=(1200, 900), shape="bottle") -> bytes:
    """A warm studio still life of a numbered bottle (the rye) or a round decanter beside two
    apples (the brandy), drawn so the demo needs no downloads."""
    width, height = size
    rng = random.Random(number)  # the same picture for the same batch
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / height
        shade = tuple(int(244 - 30 * t - 12 * math.sin(t * 3)) for _ in range(3))
        draw.line([(0, y), (width, y)], fill=(shade[0], shade[1] - 6, shade[2] - 16))
    draw.rectangle([0, int(height * 0.78), width, height], fill=(196, 170, 136))
    glow = Image.new("L", size, 0)
    ImageDraw.Draw(glow).ellipse([width * 0.25, height * 0.1, width * 0.75, height * 0.9], fill=90)
    image.paste((255, 246, 228), mask=glow.filter(ImageFilter.GaussianBlur(80)))
    draw = ImageDraw.Draw(image)
    cx, base = width // 2, int(height * 0.84)
    body_w, body_h, neck_w = 230, 430, 70
    shadow = Image.new("L", size, 0)
    ImageDraw.Draw(shadow).ellipse([cx - 200, base - 30, cx + 260, base + 30], fill=120)
    image.paste((120, 96, 70), mask=shadow.filter(ImageFilter.GaussianBlur(18)))
    draw = ImageDraw.Draw(image)
    if shape == "decanter":
        label_y = _decanter(draw, cx, base, dark, light)
    else:
        label_y = _tall_bottle(draw, cx, base, body_w, body_h, neck_w, dark, light, rng)
    try:
        font_big = ImageFont.load_default(size=64)
        font_small = ImageFont.load_default(size=22)
    except TypeError:  # pragma: no cover - Pillow without FreeType
        font_big = font_small = ImageFont.load_default()
    draw.text((cx, label_y - 28), "BATCH", font=font_small, fill=dark, anchor="mm")
    draw.text((cx, label_y + 27), f"No. {number}", font=font_big, fill=dark, anchor="mm")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


def _decanter(draw, cx, base, dark, light) -> int:
    """A round-bellied decanter with a ball stopper, and two russet apples; the label's centre."""
    for ax, r in ((cx + 300, 70), (cx + 430, 58)):  # apples on the table
        top = base - 2 * r + 10
        draw.ellipse([ax - r, top, ax + r, base + 10], fill=(150, 82, 40))
        draw.ellipse([ax - r + 18, top + 16, ax - r + 48, top + 46], fill=light)
        draw.line([(ax, top + 2), (ax + 8, top - 28)], fill=(70, 50, 30), width=7)
    draw.ellipse([cx - 200, base - 380, cx + 200, base + 4], fill=dark)
    draw.rectangle([cx - 40, base - 500, cx + 40, base - 340], fill=dark)
    draw.rectangle([cx - 52, base - 512, cx + 52, base - 490], fill=dark)
    draw.ellipse([cx - 58, base - 620, cx + 58, base - 505], fill=(196, 150, 90))
    draw.arc([cx - 170, base - 350, cx + 170, base - 20], 200, 250, fill=light, width=10)
    draw.ellipse([cx - 125, base - 275, cx + 125, base - 95], fill=(246, 238, 222))
    draw.ellipse([cx - 113, base - 263, cx + 113, base - 107], outline=dark, width=3)
    return base - 185


def _tall_bottle(draw, cx, base, body_w, body_h, neck_w, dark, light, rng) -> int:
    """A tall whiskey bottle with a paper label; the label's centre."""
    top = base - body_h
    draw.rounded_rectangle([cx - body_w // 2, top, cx + body_w // 2, base], radius=36, fill=dark)
    draw.polygon(
        [
            (cx - body_w // 2 + 10, top + 20),
            (cx - neck_w // 2, top - 90),
            (cx + neck_w // 2, top - 90),
            (cx + body_w // 2 - 10, top + 20),
        ],
        fill=dark,
    )
    draw.rectangle([cx - neck_w // 2, top - 200, cx + neck_w // 2, top - 90], fill=dark)
    draw.rectangle(
        [cx - neck_w // 2 - 6, top - 250, cx + neck_w // 2 + 6, top - 195], fill=(52, 34, 24)
    )
    for i in range(14):  # highlights in the glass
        x = cx - body_w // 2 + 28 + rng.randint(0, 8)
        draw.line([(x, top + 40 + i * 22), (x, top + 52 + i * 22)], fill=light, width=6)
    draw.rectangle([cx - 95, top + 140, cx + 95, top + 330], fill=(246, 238, 222))
    draw.rectangle([cx - 85, top + 150, cx + 85, top + 320], outline=dark, width=3)
    return top + 228


def _sell_out_past_drop(batch: Batch, drop: Drop, first_buyer: User) -> None:
    """Buy every unit of the past batch through the real inventory rules, then close it."""
    opened = drop.opens_at
    assert opened is not None
    collector_hash = passwords.hash_password("demo-collector-pass")
    buyers = [first_buyer]
    for i in range(1, batch.edition_size // batch.per_customer_limit):
        collector = User(
            email=f"collector{i}@smallbatch.example",
            password_hash=collector_hash,
            display_name=f"Collector {i}",
            role=CUSTOMER,
        )
        db.session.add(collector)
        buyers.append(collector)
    db.session.flush()
    for i, buyer in enumerate(buyers):
        at = opened + timedelta(seconds=20 * (i + 1))
        order = inventory.hold(batch.id, batch.per_customer_limit, customer=buyer, now=at)
        inventory.confirm(order, now=at + timedelta(seconds=40), customer_email=buyer.email)
    closed_at = opened + timedelta(minutes=6)
    drop.state = CLOSED
    drop.closes_at = closed_at
    drop.closed_at = closed_at
