"""Form pieces every area shares."""

from __future__ import annotations

import re
from datetime import date

from flask import request
from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict

from shop import shipping_rates
from shop.errors import InvalidQuantity

_QUANTITY = re.compile(r"[0-9]{1,4}")


class ButtonForm(FlaskForm):
    """A button that changes something (log out, confirm, retry, unsubscribe): only its CSRF
    token."""


def invalid_status(form: FlaskForm) -> int:
    """The status of a form page shown again: 422 after a refused POST, 200 on first sight."""
    return 422 if request.method == "POST" else 200


def parse_quantity(form: MultiDict) -> int:
    """Exactly one ``quantity`` field holding a whole number from 1; the batch's own limit is
    checked by ``inventory.hold``, in the statement that takes the units."""
    values = form.getlist("quantity")
    if len(values) != 1 or not _QUANTITY.fullmatch(values[0]) or int(values[0]) < 1:
        raise InvalidQuantity("Choose a quantity: a whole number from 1.")
    return int(values[0])


def buy_terms(form: MultiDict, today: date) -> tuple[int, date | None]:
    """What a buy form asks for besides the batch, checked before anything is read: the
    quantity and the buyer's date of birth (None when not asked). Its ship-to country is the
    hold's to check (``checkout.buy``)."""
    return parse_quantity(form), shipping_rates.parse_birth_date(form.get("birth_date"), today)
