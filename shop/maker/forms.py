"""Forms of the maker console. They parse and check shape; the rules live in the services."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    HiddenField,
    IntegerField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from shop import money, numbers, products, sales, shipping_rates, timezones
from shop.models.user import TAX_EXCLUSIVE, TAX_INCLUSIVE, TAX_OFF

CURRENCY_CHOICES = [(code, code.upper()) for code in money.SUPPORTED]
LOCAL_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]


MAX_BATCH_NUMBER = 1_000_000


class WholeNumberField(IntegerField):
    """An IntegerField that takes ASCII digits only and never a number the database can't hold
    (``int()`` would take Arabic-Indic or full-width digits, and 10**12 would reach the query)."""

    def process_formdata(self, valuelist):
        text = valuelist[0].strip() if valuelist else ""
        self.data = numbers.parse_whole(text) if text else None
        if text and self.data is None:
            raise ValueError("Enter a whole number in digits 0-9.")


class SettingsForm(FlaskForm):
    display_name = StringField(
        "Your name or workshop",
        validators=[DataRequired(), Length(max=80)],
        description="Customers see this on your drops.",
    )
    timezone = SelectField(
        "Time zone",
        description="Times in the console are shown and entered in this zone.",
    )
    tax_mode = RadioField(
        "Taxes",
        choices=[
            (TAX_OFF, "No tax at checkout: my prices are what customers pay"),
            (TAX_EXCLUSIVE, "Stripe Tax adds tax at checkout (my prices exclude it)"),
            (TAX_INCLUSIVE, "Stripe Tax, included in my prices (shown inside the price)"),
        ],
        default=TAX_OFF,
        description="Stripe Tax computes the tax for the buyer's address; the order records it.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.timezone.choices = [
            (name, name.replace("_", " ")) for name in timezones.timezone_names()
        ]


class ProductForm(FlaskForm):
    name = StringField(
        "Name",
        validators=[DataRequired(message="Give the product a name."), Length(max=120)],
        description='What you make, across batches — "Highland Rye".',
    )
    description = TextAreaField(
        "Description",
        validators=[Optional(), Length(max=5000)],
        description="A sentence or two that stays true for every batch.",
    )


class BatchForm(FlaskForm):
    number = WholeNumberField(
        "Batch number",
        validators=[
            InputRequired(message="Give the batch a number."),
            NumberRange(min=1, max=MAX_BATCH_NUMBER),
        ],
    )
    edition_size = WholeNumberField(
        "Edition size",
        validators=[
            InputRequired(message="How many units are in this batch?"),
            NumberRange(min=1, max=products.MAX_EDITION_SIZE),
        ],
        description="How many numbered units exist. Once on sale it can grow, never shrink "
        "below what's sold or held.",
    )
    edition_reason = StringField(
        "Why the edition size changes",
        validators=[Optional(), Length(max=500)],
        description="Needed once the drop has opened: it is shown with the change on the "
        "batch's public edition ledger.",
    )
    unit_singular = StringField(
        "One unit",
        default="unit",
        validators=[
            DataRequired(message='What is one unit called? e.g. "bottle"'),
            Length(max=32),
        ],
        description='As in "1 bottle": "bottle", "bag", "scarf".',
    )
    unit_label = StringField(
        "Several units",
        default="units",
        validators=[
            DataRequired(message='What are several units called? e.g. "bottles"'),
            Length(max=32),
        ],
        description='As in "240 bottles": "bottles", "bags", "scarves".',
    )
    # Not ``price``: the batch's own ``price`` (integer minor units) must never fill this box.
    unit_price = StringField(
        "Price per unit",
        validators=[DataRequired(message='Enter a price like "95.00".'), Length(max=20)],
        description="New orders pay the new price; existing orders keep theirs.",
    )
    currency = SelectField("Currency", choices=CURRENCY_CHOICES, default="usd")
    per_customer_limit = WholeNumberField(
        "Limit per customer",
        default=2,
        validators=[
            InputRequired(message="Set a per-customer limit."),
            NumberRange(min=1),
            NumberRange(max=products.MAX_EDITION_SIZE),
        ],
    )
    summary = StringField(
        "Summary",
        validators=[Optional(), Length(max=280)],
        description="One line for listings.",
    )
    story = TextAreaField(
        "Origin story",
        validators=[Optional(), Length(max=20000)],
        description="Markdown: **bold**, *italic*, ## headings, > quotes, lists, links.",
        render_kw={"rows": 14, "data-preview": "story-preview"},
    )
    origin_place = StringField("Where it comes from", validators=[Optional(), Length(max=160)])
    produced_on = DateField("Produced on", validators=[Optional()])
    inputs = TextAreaField(
        "Ingredients or inputs",
        validators=[Optional(), Length(max=2000)],
        render_kw={"rows": 3},
    )
    # ``process`` would shadow Form.process, hence the field's own name.
    making = TextAreaField(
        "Process", validators=[Optional(), Length(max=2000)], render_kw={"rows": 3}
    )

    ships_to = StringField(
        "Ships only to",
        validators=[Optional(), Length(max=400)],
        description="Two-letter country codes, e.g. DE, FR, GB, US — for spirits and anything "
        "that may not go everywhere. Empty: wherever your shipping rates reach.",
    )
    minimum_age = WholeNumberField(
        "Minimum age",
        validators=[Optional(), NumberRange(min=1, max=99, message="Between 1 and 99.")],
        description="Buyers confirm their date of birth before they can hold a unit. "
        "Empty: no age check.",
    )
    tax_code = StringField(
        "Stripe tax code",
        validators=[Optional(), Length(max=32)],
        description="Only with Stripe Tax on (Settings), e.g. txcd_99999999. Empty: the default.",
    )

    price_minor: int | None = None

    def validate_unit_price(self, field) -> None:
        currency = self.currency.data or "usd"
        try:
            self.price_minor = money.parse_amount(field.data, currency)
        except ValueError as error:
            if str(error) == "too large":
                highest = money.format_money(money.MAX_PRICE, currency)
                raise ValidationError(f"The highest price is {highest}.") from None
            places = money.decimals(currency)
            example = "95" if places == 0 else "95." + "0" * places
            raise ValidationError(
                f'Enter a price like "{example}" ({places} decimal places for {currency.upper()}).'
            ) from None

    def details(self) -> products.BatchDetails:
        return products.BatchDetails(
            number=self.number.data,
            edition_size=self.edition_size.data,
            price=self.price_minor or 0,  # set by validate_unit_price; 0 is refused
            currency=self.currency.data,
            per_customer_limit=self.per_customer_limit.data,
            unit_label=self.unit_label.data,
            unit_singular=self.unit_singular.data,
            summary=self.summary.data or "",
            story=self.story.data or "",
            origin_place=self.origin_place.data or "",
            produced_on=self.produced_on.data,
            inputs=self.inputs.data or "",
            process=self.making.data or "",
            ships_to=self.ships_to.data or "",
            minimum_age=self.minimum_age.data,
            edition_reason=self.edition_reason.data or "",
            tax_code=self.tax_code.data or "",
        )


class ImageForm(FlaskForm):
    image = FileField(
        "Image",
        validators=[FileRequired(message="Choose an image file to upload.")],
        description="JPEG, PNG or WebP, up to 8 MB. Location data and other metadata are removed.",
        render_kw={"accept": "image/jpeg,image/png,image/webp"},
    )
    alt = StringField(
        "Describe the picture",
        validators=[DataRequired(message="Describe the picture in a few words."), Length(max=200)],
        description="Read aloud to people who can't see it.",
    )


class AltForm(FlaskForm):
    alt = StringField(
        "Description",
        validators=[DataRequired(message="Describe the picture in a few words."), Length(max=200)],
    )


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class DropForm(FlaskForm):
    title = StringField(
        "Title",
        validators=[DataRequired(message="Give the drop a title."), Length(max=140)],
        description='What customers see: "The Winter Release".',
    )
    slug = StringField(
        "Web address",
        validators=[Optional(), Length(max=80)],
        description="Leave empty to make one from the title.",
    )
    story = TextAreaField(
        "Story",
        validators=[Optional(), Length(max=20000)],
        description="Markdown. Why this release, what's in it.",
        render_kw={"rows": 10, "data-preview": "story-preview"},
    )
    batches = MultiCheckboxField("Batches in this drop", coerce=int)
    allow_promotion_codes = BooleanField(
        "Accept Stripe promotion codes at checkout",
        description="Codes you create in Stripe. A discount changes what a customer pays, "
        "never how many they may buy or which numbers they get.",
    )
    mode = RadioField(
        "How it sells",
        choices=[
            ("sale", "First come, first served: customers buy while it is open"),
            (
                "draw",
                "A draw: customers enter while it is open, winners are drawn after it "
                "closes and get a hold to pay for",
            ),
        ],
        default="sale",
        description="A draw needs a planned closing time: when entries close. Its seed is "
        "fixed, and its fingerprint shown on the drop page, when you open or schedule it.",
    )
    # Local wall-clock times; named apart from the drop's UTC columns so ``obj=drop`` never
    # fills them with a UTC value that would then be read as local.
    opens_local = DateTimeLocalField(
        "Planned opening", format=LOCAL_FORMATS, validators=[Optional()]
    )
    closes_local = DateTimeLocalField(
        "Planned closing", format=LOCAL_FORMATS, validators=[Optional()]
    )

    def set_batch_choices(self, batches) -> None:
        self.batches.choices = [
            (b.id, f"{b.product.name}, Batch No. {b.number} — {b.units_of(b.edition_size)}")
            for b in batches
        ]


def _step_form(verb: str, step: str, tick: str) -> type[FlaskForm]:
    """The open or close step's form: now or at a time (``step``: "opening"), and the box to
    ``tick``."""

    class StepForm(FlaskForm):
        when = RadioField(
            "When",
            choices=[("now", f"{verb} now"), ("later", f"Schedule the {step}")],
            default="now",
            validators=[InputRequired(message=f"Choose when the drop {verb.lower()}s.")],
        )
        at = DateTimeLocalField(
            f"{step.capitalize()} time", format=LOCAL_FORMATS, validators=[Optional()]
        )
        confirm = BooleanField(tick, validators=[DataRequired(message="Tick the box to confirm.")])

    StepForm.__name__ = StepForm.__qualname__ = f"{verb}DropForm"
    return StepForm


OpenDropForm = _step_form(
    "Open",
    "opening",
    "I've checked the batches and prices; customers can buy from the opening time.",
)
CloseDropForm = _step_form("Close", "closing", "I understand a closed drop can't be reopened.")


class ShipForm(FlaskForm):
    carrier = StringField(
        "Carrier",
        validators=[DataRequired(message="Say which carrier is delivering it."), Length(max=80)],
        render_kw={"placeholder": "e.g. USPS, Royal Mail, DHL"},
    )
    tracking_number = StringField("Tracking number", validators=[Optional(), Length(max=120)])


class RefundForm(FlaskForm):
    """The whole order, or some of its units (their serials); the service checks the serials
    against the order, so any number is accepted here and refused there with a reason."""

    scope = RadioField(
        "What to refund",
        choices=[("order", "The whole order"), ("units", "Some units")],
        default="order",
        validators=[Optional()],  # not sent (an older page): the whole order, as it always was
    )
    serials = MultiCheckboxField("Units to refund", coerce=int, validate_choice=False)
    reason = StringField(
        "Why (the customer sees this)",
        validators=[Optional(), Length(max=300)],
        description="For example: “No. 3 arrived broken.”",
    )
    confirm = BooleanField(
        "Refund this to the customer's card. This can't be undone.",
        validators=[DataRequired(message="Tick the box to confirm the refund.")],
    )

    def validate_serials(self, field) -> None:
        if self.scope.data == "units" and not field.data:
            raise ValidationError("Choose the units to refund.")


class OrderFilterForm(FlaskForm):
    """GET filters for the orders list and its CSV export (no CSRF: it changes nothing)."""

    class Meta:
        csrf = False

    drop = SelectField("Drop", coerce=str, validators=[Optional()])
    batch = SelectField("Batch", coerce=str, validators=[Optional()])
    state = SelectField(
        "State",
        choices=[
            ("", "Any state"),
            ("to_ship", "Paid, not shipped"),
            ("paid", "Paid"),
            ("held", "Held (checking out)"),
            ("refunded", "Refunded"),
            ("expired", "Expired"),
            ("cancelled", "Cancelled"),
        ],
        validators=[Optional()],
    )
    q = StringField("Customer email", validators=[Optional(), Length(max=254)])
    page = HiddenField()

    def set_choices(self, drops, batches) -> None:
        self.drop.choices = [("", "All drops")] + [(str(d.id), d.title) for d in drops]
        self.batch.choices = [("", "All batches")] + [
            (str(b.id), f"{b.product.name}, No. {b.number}") for b in batches
        ]

    def filters(self) -> sales.OrderFilter:
        known = {value for value, _ in self.state.choices}
        state = self.state.data if self.state.data in known else None
        state = state or None
        return sales.OrderFilter(
            drop_id=numbers.parse_whole(self.drop.data, low=1),
            batch_id=numbers.parse_whole(self.batch.data, low=1),
            state=None if state == "to_ship" else state,
            to_ship=state == "to_ship",
            email=self.q.data or "",
        )

    def page_number(self) -> int:
        return numbers.parse_whole(self.page.data, low=1, high=99999) or 1


class ShippingRateForm(FlaskForm):
    """One shipping rate: a zone of countries, its price, free above an amount if wanted."""

    name = StringField(
        "Name",
        validators=[DataRequired(message="Name the rate, e.g. “Europe”."), Length(max=80)],
    )
    countries = StringField(
        "Countries",
        validators=[DataRequired(message="List the countries the rate covers."), Length(max=800)],
        description="Two-letter codes: DE, FR, GB, US …",
    )
    amount = StringField(
        "Price",
        validators=[DataRequired(message='Enter a price like "12.00", or 0 for free.')],
    )
    currency = SelectField("Currency", choices=CURRENCY_CHOICES, default="usd")
    free_above = StringField(
        "Free from (optional)",
        validators=[Optional()],
        description="Orders of at least this much ship free.",
    )
    min_days = WholeNumberField("Delivery from (days)", validators=[Optional()])
    max_days = WholeNumberField("to (days)", validators=[Optional()])
    batch = SelectField("Applies to", coerce=int, default=0)

    amount_minor: int = 0
    free_above_minor: int | None = None

    def set_batch_choices(self, batches) -> None:
        self.batch.choices = [(0, "All my batches (unless a batch has rates of its own)")] + [
            (b.id, f"Only {b.product.name}, Batch No. {b.number}") for b in batches
        ]

    def _minor(self, text: str) -> int:
        currency = self.currency.data or "usd"
        if text.strip() in ("0", "0.0", "0.00"):
            return 0
        try:
            return money.parse_amount(text, currency)
        except ValueError:
            example = "12" if money.decimals(currency) == 0 else "12.00"
            raise ValidationError(f'Enter an amount like "{example}" in digits.') from None

    def validate_amount(self, field) -> None:
        self.amount_minor = self._minor(field.data or "")

    def validate_free_above(self, field) -> None:
        if (field.data or "").strip():
            self.free_above_minor = self._minor(field.data) or None

    def details(self) -> shipping_rates.RateDetails:
        return shipping_rates.RateDetails(
            name=self.name.data or "",
            countries=self.countries.data or "",
            amount=self.amount_minor,
            currency=self.currency.data or "usd",
            free_above=self.free_above_minor,
            min_days=self.min_days.data,
            max_days=self.max_days.data,
        )
