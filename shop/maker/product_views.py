"""The maker console: products, their batches and the batches' images."""

from __future__ import annotations

from flask import (
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from shop import (
    clock,
    money,
    products,
)
from shop.auth import maker_required
from shop.extensions import db
from shop.forms import ButtonForm, invalid_status
from shop.maker import forms
from shop.maker.views import bp, on_error


@bp.get("/products", endpoint="products")
@maker_required
def products_list():
    return render_template("maker/products.html", products=products.products_of(current_user))


@bp.route("/products/new", methods=["GET", "POST"])
@maker_required
def new_product():
    form = forms.ProductForm()

    def page(error: str | None = None):
        return render_template("maker/product_form.html", form=form, product=None, error=error)

    if not form.validate_on_submit():
        return page(), invalid_status(form)
    on_error(lambda e: page(e.message))
    product = products.create_product(
        current_user, name=form.name.data, description=form.description.data, actor=current_user
    )
    db.session.commit()
    flash(f"{product.name} is saved. Add its first batch.", "success")
    return redirect(url_for("maker.new_batch", product_id=product.id), 303)


@bp.route("/products/<int:product_id>", methods=["GET", "POST"])
@maker_required
def product(product_id: int):
    found = products.product_for(current_user, product_id)
    form = forms.ProductForm(obj=found)

    def page(error: str | None = None):
        return render_template(
            "maker/product_form.html", form=form, product=found, error=error, now=clock.now()
        )

    if not form.validate_on_submit():
        return page(), invalid_status(form)
    on_error(lambda e: page(e.message))
    products.update_product(
        found, name=form.name.data, description=form.description.data, actor=current_user
    )
    db.session.commit()
    flash("Product saved.", "success")
    return redirect(url_for("maker.product", product_id=found.id), 303)


# --------------------------------------------------------------------------- batches


@bp.route("/products/<int:product_id>/batches/new", methods=["GET", "POST"])
@maker_required
def new_batch(product_id: int):
    found = products.product_for(current_user, product_id)
    form = forms.BatchForm()
    if request.method == "GET":
        form.number.data = products.next_batch_number(found)
        previous = found.batches[-1] if found.batches else None
        if previous is not None:  # most makers repeat their last batch's terms
            form.currency.data = previous.currency
            form.unit_label.data = previous.unit_label
            form.unit_singular.data = previous.unit_singular
            form.per_customer_limit.data = previous.per_customer_limit

    def page(error: str | None = None):
        return render_template(
            "maker/batch_form.html", form=form, product=found, batch=None, error=error
        )

    if not form.validate_on_submit():
        return page(), invalid_status(form)
    on_error(lambda e: page(e.message))
    batch = products.create_batch(found, form.details(), actor=current_user)
    db.session.commit()
    flash(f"{batch.title} is saved. Add a picture, then put it in a drop.", "success")
    return redirect(url_for("maker.batch", batch_id=batch.id) + "#images", 303)


def _batch_form(batch, *, submitted: bool) -> forms.BatchForm:
    """The batch form with what was posted, or filled from the batch as stored."""
    if submitted:
        return forms.BatchForm()
    form = forms.BatchForm(formdata=None, obj=batch)
    form.unit_price.data = money.decimal_amount(batch.price, batch.currency)
    form.making.data = batch.process
    return form


@bp.route("/batches/<int:batch_id>", methods=["GET", "POST"])
@maker_required
def batch(batch_id: int):
    found = products.batch_for(current_user, batch_id)
    form = _batch_form(found, submitted=request.method == "POST")
    now = clock.now()

    def page(error: str | None = None):
        fresh = products.batch_for(current_user, batch_id)
        return render_template(
            "maker/batch_form.html",
            form=form,
            product=fresh.product,
            batch=fresh,
            error=error,
            opened=products.on_sale(fresh, clock.now()),
            image_form=forms.ImageForm(formdata=None),
        )

    if not form.validate_on_submit():
        return page(), invalid_status(form)
    on_error(lambda e: page(e.message))
    changed = products.update_batch(found, form.details(), actor=current_user, now=now)
    db.session.commit()
    if changed:
        flash(f"Saved: {', '.join(changed)} updated.", "success")
    else:
        flash("Nothing changed.", "info")
    return redirect(url_for("maker.batch", batch_id=found.id), 303)


@bp.post("/batches/<int:batch_id>/images")
@maker_required
def upload_image(batch_id: int):
    found = products.batch_for(current_user, batch_id)
    form = forms.ImageForm()
    batch_form = _batch_form(found, submitted=False)

    def page(error: str | None = None):
        return render_template(
            "maker/batch_form.html",
            form=batch_form,
            product=found.product,
            batch=products.batch_for(current_user, batch_id),
            error=None,
            image_error=error,
            opened=products.on_sale(found, clock.now()),
            image_form=form,
        )

    if not form.validate_on_submit():
        return page(), 422
    on_error(lambda e: page(e.message))
    products.add_image(
        found, form.image.data.read(), alt=form.alt.data, actor=current_user, now=clock.now()
    )
    db.session.commit()
    flash("Image added.", "success")
    return redirect(url_for("maker.batch", batch_id=found.id) + "#images", 303)


@bp.post("/images/<int:image_id>/alt")
@maker_required
def update_image(image_id: int):
    image = products.image_for(current_user, image_id)
    form = forms.AltForm()
    if not form.validate_on_submit():
        flash("Describe the picture in a few words.", "error")
        return redirect(url_for("maker.batch", batch_id=image.batch_id) + "#images", 303)
    products.update_image_alt(image, form.alt.data, actor=current_user)
    db.session.commit()
    flash("Image description saved.", "success")
    return redirect(url_for("maker.batch", batch_id=image.batch_id) + "#images", 303)


@bp.post("/images/<int:image_id>/delete")
@maker_required
def delete_image(image_id: int):
    image = products.image_for(current_user, image_id)
    batch_id = image.batch_id
    form = ButtonForm()
    if not form.validate_on_submit():
        return redirect(url_for("maker.batch", batch_id=batch_id) + "#images", 303)
    products.remove_image(image, actor=current_user, now=clock.now())
    db.session.commit()
    flash("Image removed.", "success")
    return redirect(url_for("maker.batch", batch_id=batch_id) + "#images", 303)
