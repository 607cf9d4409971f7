"""The hosted checkout page a person (or a browser test) clicks through: ``/checkout/<id>``.

``GET`` shows the order summary and a plain HTML form (no JavaScript, no external resources).
``POST`` pays: a successful card completes the session and answers ``303`` to ``success_url``
with the literal ``{CHECKOUT_SESSION_ID}`` replaced by the session id; a declined card re-renders
the form with the decline message (422) and the session stays open. Cancel is a plain link to
``cancel_url`` and changes nothing. Expired and completed sessions show a clear notice.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, redirect, render_template_string, request

from stripe_emulator import cards, pricing
from stripe_emulator.errors import StripeAPIError
from stripe_emulator.objects import format_money
from stripe_emulator.state import DEMO_NAME, EmulatorState, demo_address

PLACEHOLDER = "{CHECKOUT_SESSION_ID}"


def register(app: Flask, state: EmulatorState) -> None:
    @app.get("/checkout/<session_id>")
    def checkout_page(session_id: str) -> tuple[str, int]:
        state.sweep()
        session = state.session_snapshot(session_id)
        if session is None:
            return _notice("Checkout session not found", "This link is not valid.", None), 404
        if session["status"] != "open":
            return _closed(session)
        return _page(state, session, _defaults(session, state), error=None), 200

    @app.post("/checkout/<session_id>")
    def pay(session_id: str) -> Response | tuple[str, int]:
        state.sweep()
        session = state.session_snapshot(session_id)
        if session is None:
            return _notice("Checkout session not found", "This link is not valid.", None), 404
        if session["status"] != "open":
            return _closed(session, status=409)
        form = {key: request.form.get(key, "").strip() for key in _defaults(session, state)}
        if request.form.get("action") == "update":
            return _page(state, session, form, error=None), 200
        problem = _check_form(session, form)
        if problem:
            return _page(state, session, form, error=problem), 422
        shipping = None
        if session["shipping_address_collection"]:
            shipping = {
                "line1": form["line1"],
                "line2": form["line2"] or None,
                "city": form["city"],
                "postal_code": form["postal_code"],
                "state": form["state"] or None,
                "country": form["country"],
            }
        try:
            completed = state.complete_session(
                session_id,
                email=form["email"],
                card=form["card_number"],
                name=form["name"] or None,
                shipping_address=shipping,
                shipping_rate=form["shipping_rate"] or None,
                promotion_code=form["promotion_code"] or None,
            )
        except StripeAPIError as error:
            still_open = (state.session_snapshot(session_id) or {}).get("status") == "open"
            if error.status in (400, 402) and still_open:
                return _page(state, session, form, error=error.message), 422
            fresh = state.session_snapshot(session_id) or session
            return _closed(fresh, status=409)
        success_url = completed["success_url"]
        if success_url:
            return redirect(success_url.replace(PLACEHOLDER, session_id), 303)
        return _notice("Payment complete", "Thanks! Your payment went through.", None), 200


def _defaults(session: dict[str, Any], state: EmulatorState) -> dict[str, str]:
    """Form values a visitor starts with: test card, prefilled email, a demo address, the
    first shipping option, no promotion code."""
    options = state.shipping_options(session["id"])
    values = {
        "email": session["customer_email"] or "",
        "card_number": "4242 4242 4242 4242",
        "expiry": "12 / 34",
        "cvc": "123",
        "name": "",
        "shipping_rate": options[0]["id"] if options else "",
        "promotion_code": "",
    }
    collection = session["shipping_address_collection"]
    if collection:
        country = collection["allowed_countries"][0]
        address = demo_address(country)
        values.update(
            name=DEMO_NAME,
            line1=address["line1"],
            line2="",
            city=address["city"],
            postal_code=address["postal_code"],
            state=address["state"] or "",
            country=country,
        )
    return values


def _check_form(session: dict[str, Any], form: dict[str, str]) -> str | None:
    if "@" not in form["email"] or "." not in form["email"].rsplit("@", 1)[-1]:
        return "Enter a valid email address."
    if session["customer_email"] and form["email"] != session["customer_email"]:
        form["email"] = session["customer_email"]
    collection = session["shipping_address_collection"]
    if collection:
        for field, label in (
            ("name", "name"),
            ("line1", "address"),
            ("city", "city"),
            ("postal_code", "postal code"),
        ):
            if not form[field]:
                return f"Enter the shipping {label}."
        if form["country"] not in collection["allowed_countries"]:
            return "We cannot ship to that country."
    if cards.classify(form["card_number"]).result == "invalid":
        return cards.classify(form["card_number"]).message
    return None


def _closed(session: dict[str, Any], status: int = 200) -> tuple[str, int]:
    if session["status"] == "expired":
        return (
            _notice(
                "This checkout session has expired",
                "The time to pay has run out, so nothing was charged. Go back to the shop to "
                "start again.",
                session["cancel_url"],
            ),
            status,
        )
    message = (
        "This checkout session is complete: the payment went through."
        if session["payment_status"] != "unpaid"
        else "This checkout session is complete; the payment is still processing."
    )
    link = (
        session["success_url"].replace(PLACEHOLDER, session["id"])
        if session["success_url"]
        else None
    )
    return _notice(
        "This checkout session is complete", message, link, link_label="Continue"
    ), status


def _page(
    state: EmulatorState, session: dict[str, Any], form: dict[str, str], *, error: str | None
) -> str:
    currency = session["currency"]
    items = [
        {
            "name": item["description"],
            "quantity": item["quantity"],
            "unit": format_money(item["price"]["unit_amount"] or 0, currency)
            if item["price"]["unit_amount"] is not None
            else None,
            "amount": format_money(item["amount_total"], currency),
        }
        for item in state.session_line_items(session["id"])
    ]
    collection = session["shipping_address_collection"]
    country = form.get("country") or cards.BILLING_COUNTRY
    code_error = None
    try:
        totals = state.preview(
            session["id"],
            shipping_rate=form.get("shipping_rate") or None,
            promotion_code=form.get("promotion_code") or None,
            country=country if session["automatic_tax"]["enabled"] else None,
        )
    except StripeAPIError as problem:
        code_error = problem.message
        totals = state.preview(
            session["id"], shipping_rate=None, promotion_code=None, country=country
        )
    options = [
        {
            "id": rate["id"],
            "name": rate["display_name"],
            "amount": format_money(rate["fixed_amount"]["amount"], currency),
            "estimate": _estimate(rate["delivery_estimate"]),
        }
        for rate in state.shipping_options(session["id"])
    ]
    return render_template_string(
        PAGE,
        session=session,
        items=items,
        form=form,
        error=error or code_error,
        subtotal=format_money(totals.subtotal, currency),
        discount=format_money(totals.discount, currency) if totals.discount else None,
        shipping=format_money(totals.shipping, currency) if options else None,
        tax=(
            f"{pricing.tax_name(totals.tax_country)} {totals.tax_rate_bps / 100:g} % "
            f"({totals.tax_country})"
            if totals.tax_country and totals.tax_rate_bps is not None
            else None
        ),
        tax_amount=format_money(totals.tax, currency),
        tax_pending=session["automatic_tax"]["enabled"] and not totals.tax_country,
        total=format_money(totals.total, currency),
        options=options,
        countries=collection["allowed_countries"] if collection else [],
        email_locked=bool(session["customer_email"]),
        style=STYLE,
    )


def _estimate(estimate: dict[str, Any] | None) -> str | None:
    """``{"minimum": {"unit": "business_day", "value": 2}, …}`` → "2 to 5 business days"."""
    if not estimate:
        return None
    bounds = [estimate.get(side) for side in ("minimum", "maximum") if estimate.get(side)]
    unit = bounds[-1]["unit"].replace("_", " ")
    values = " to ".join(str(bound["value"]) for bound in bounds)
    plural = "" if bounds[-1]["value"] == 1 else "s"
    return f"{values} {unit}{plural}"


def _notice(
    title: str, message: str, link: str | None, link_label: str = "Back to the shop"
) -> str:
    return render_template_string(
        NOTICE, title=title, message=message, link=link, link_label=link_label, style=STYLE
    )


STYLE = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,
sans-serif;color:#1a1f36;background:#f6f9fc}
.banner{background:#635bff;color:#fff;text-align:center;padding:.5rem 1rem;font-size:.9rem;
font-weight:600;letter-spacing:.01em}
.banner small{font-weight:400;opacity:.85}
main{max-width:960px;margin:0 auto;padding:2rem 1rem;display:grid;gap:2rem;
grid-template-columns:repeat(auto-fit,minmax(300px,1fr));align-items:start}
.card{background:#fff;border-radius:12px;box-shadow:0 2px 8px rgba(50,50,93,.08);padding:1.5rem}
h1{font-size:1rem;color:#697386;margin:0;font-weight:500}
.total{font-size:2.25rem;font-weight:700;margin:.25rem 0 1.25rem}
ul.items{list-style:none;padding:0;margin:0}
ul.items li{display:flex;justify-content:space-between;gap:1rem;padding:.6rem 0;
border-bottom:1px solid #e3e8ee}
.qty{color:#697386;font-size:.875rem;display:block}
.sum{display:flex;justify-content:space-between;padding:.4rem 0;color:#3c4257}
.sum.grand{font-weight:700;color:#1a1f36;border-top:1px solid #e3e8ee;margin-top:.4rem;
padding-top:.8rem}
fieldset{border:0;padding:0;margin:0 0 1.25rem}
legend{font-weight:600;margin-bottom:.5rem}
label{display:block;font-size:.875rem;color:#3c4257;margin:.6rem 0 .25rem}
input,select{width:100%;font:inherit;padding:.6rem .75rem;border:1px solid #cfd7df;
border-radius:6px;background:#fff}
input[readonly]{background:#f6f9fc;color:#697386}
input:focus,select:focus{outline:2px solid #635bff;outline-offset:1px;border-color:#635bff}
.row{display:grid;grid-template-columns:1fr 1fr;gap:.75rem}
button{width:100%;font:inherit;font-weight:600;color:#fff;background:#635bff;border:0;
border-radius:6px;padding:.8rem;cursor:pointer;margin-top:.5rem}
button:hover{background:#5249e0}
button.secondary{background:#fff;color:#635bff;border:1px solid #cfd7df;margin:0 0 1.25rem}
label.choice{display:flex;gap:.6rem;align-items:flex-start;justify-content:space-between;
border:1px solid #cfd7df;border-radius:6px;padding:.6rem .75rem;margin:.4rem 0;color:#1a1f36}
label.choice input{width:auto;margin-top:.3rem}
label.choice span:first-of-type{flex:1}
.alert{background:#fff1f0;color:#b3093c;border:1px solid #ffc9c5;border-radius:6px;
padding:.75rem 1rem;margin-bottom:1rem}
.cancel{display:inline-block;margin-top:1rem;color:#635bff;text-decoration:none}
.hint{margin-top:1.5rem;font-size:.8rem;color:#697386}
.hint table{border-collapse:collapse;width:100%}
.hint td{padding:.2rem .6rem .2rem 0;vertical-align:top}
.hint td:first-child{white-space:nowrap}
.hint td code{overflow-wrap:anywhere}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
.notice{max-width:520px;margin:3rem auto;text-align:center}
.notice h1{font-size:1.35rem;color:#1a1f36;font-weight:600}
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pay {{ total }} · Stripe test checkout (local emulator)</title>
<style>{{ style|safe }}</style>
</head>
<body>
<div class="banner">Stripe test checkout (local emulator)
  <small>— test mode, no real money moves</small></div>
<main>
  <section class="card" aria-labelledby="summary-title">
    <h1 id="summary-title">Pay</h1>
    <p class="total">{{ total }}</p>
    <ul class="items">
      {% for item in items %}
      <li><span>{{ item.name }}
        <span class="qty">Qty {{ item.quantity }}
          {%- if item.unit %} &times; {{ item.unit }}{% endif %}</span>
        </span><span>{{ item.amount }}</span></li>
      {% endfor %}
    </ul>
    <div class="sum"><span>Subtotal</span><span>{{ subtotal }}</span></div>
    {% if discount %}
    <div class="sum"><span>Discount ({{ form.promotion_code|upper }})</span>
      <span>&minus;{{ discount }}</span></div>
    {% endif %}
    {% if shipping %}
    <div class="sum"><span>Shipping</span><span>{{ shipping }}</span></div>
    {% endif %}
    {% if tax %}
    <div class="sum"><span>{{ tax }}</span><span>{{ tax_amount }}</span></div>
    {% elif tax_pending %}
    <div class="sum"><span>Tax</span><span class="qty">calculated from your address</span></div>
    {% endif %}
    <div class="sum grand"><span>Total due</span><span>{{ total }}</span></div>
  </section>
  <section class="card" aria-labelledby="pay-title">
    <h1 id="pay-title">Payment details</h1>
    {% if error %}<div class="alert" role="alert">{{ error }}</div>{% endif %}
    <form method="post" novalidate>
      <fieldset>
        <legend>Contact information</legend>
        <label for="email">Email</label>
        <input id="email" name="email" type="email" autocomplete="email" required
               value="{{ form.email }}"{% if email_locked %} readonly{% endif %}>
      </fieldset>
      {% if countries %}
      <fieldset>
        <legend>Shipping address</legend>
        <label for="name">Full name</label>
        <input id="name" name="name" autocomplete="name" required value="{{ form.name }}">
        <label for="country">Country</label>
        <select id="country" name="country" autocomplete="country">
          {% for code in countries %}
          <option value="{{ code }}"{% if code == form.country %} selected{% endif %}>
            {{- code }}</option>
          {% endfor %}
        </select>
        <label for="line1">Address line 1</label>
        <input id="line1" name="line1" autocomplete="address-line1" required
               value="{{ form.line1 }}">
        <label for="line2">Address line 2 (optional)</label>
        <input id="line2" name="line2" autocomplete="address-line2" value="{{ form.line2 }}">
        <div class="row">
          <div><label for="postal_code">Postal code</label>
            <input id="postal_code" name="postal_code" autocomplete="postal-code" required
                   value="{{ form.postal_code }}"></div>
          <div><label for="city">City</label>
            <input id="city" name="city" autocomplete="address-level2" required
                   value="{{ form.city }}"></div>
        </div>
        <label for="state">State / region (optional)</label>
        <input id="state" name="state" autocomplete="address-level1" value="{{ form.state }}">
      </fieldset>
      {% endif %}
      {% if options %}
      <fieldset>
        <legend>Shipping method</legend>
        {% for option in options %}
        <label class="choice"><input type="radio" name="shipping_rate" value="{{ option.id }}"
          {%- if option.id == form.shipping_rate %} checked{% endif %}>
          <span>{{ option.name }}{% if option.estimate %}
            <span class="qty">{{ option.estimate }}</span>{% endif %}</span>
          <span>{{ option.amount }}</span></label>
        {% endfor %}
      </fieldset>
      {% endif %}
      {% if session.allow_promotion_codes %}
      <fieldset>
        <legend>Promotion code</legend>
        <label for="promotion_code">Code (optional)</label>
        <input id="promotion_code" name="promotion_code" autocomplete="off"
               value="{{ form.promotion_code }}">
      </fieldset>
      {% endif %}
      {% if options or session.allow_promotion_codes or tax_pending or tax %}
      <button type="submit" name="action" value="update" class="secondary">
        Update total</button>
      {% endif %}
      <fieldset>
        <legend>Card information</legend>
        <label for="card_number">Card number</label>
        <input id="card_number" name="card_number" inputmode="numeric" autocomplete="cc-number"
               required value="{{ form.card_number }}">
        <div class="row">
          <div><label for="expiry">Expiry (MM / YY)</label>
            <input id="expiry" name="expiry" autocomplete="cc-exp" value="{{ form.expiry }}"></div>
          <div><label for="cvc">CVC</label>
            <input id="cvc" name="cvc" autocomplete="cc-csc" value="{{ form.cvc }}"></div>
        </div>
      </fieldset>
      <button type="submit">Pay {{ total }}</button>
    </form>
    {% if session.cancel_url %}
    <a class="cancel" href="{{ session.cancel_url }}">&larr; Cancel and return to the shop</a>
    {% endif %}
    <div class="hint">
      <strong>Test cards</strong>
      <table>
        <tr><td><code>4242 4242 4242 4242</code></td><td>payment succeeds</td></tr>
        <tr><td><code>4000 0000 0000 0002</code></td><td>card declined</td></tr>
        <tr><td><code>4000 0000 0000 9995</code></td><td>insufficient funds</td></tr>
        <tr><td><code>4000 0025 0000 3155</code></td><td>payment pending; settled later through
          <code>POST /_emulator/sessions/&lt;id&gt;/async_result</code></td></tr>
      </table>
    </div>
  </section>
</main>
</body>
</html>
"""

NOTICE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · Stripe test checkout (local emulator)</title>
<style>{{ style|safe }}</style>
</head>
<body>
<div class="banner">Stripe test checkout (local emulator)
  <small>— test mode, no real money moves</small></div>
<section class="card notice" role="status">
  <h1>{{ title }}</h1>
  <p>{{ message }}</p>
  {% if link %}<a class="cancel" href="{{ link }}">{{ link_label }} &rarr;</a>{% endif %}
</section>
</body>
</html>
"""
