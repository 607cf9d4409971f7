from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from shop import passwords, users
from shop.errors import InvalidInput

PASSWORD_RULE = f"Passwords are {passwords.MIN_LENGTH} to {passwords.MAX_LENGTH} characters long."


def new_password_field(label: str) -> PasswordField:
    """A password being chosen (change, reset, invitation), within the length rule."""
    return PasswordField(
        label,
        validators=[DataRequired(), Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH)],
        description=f"{passwords.MIN_LENGTH} to {passwords.MAX_LENGTH} characters.",
    )


def confirm_password_field(label: str) -> PasswordField:
    """The chosen password typed again; it must match ``new_password``."""
    return PasswordField(
        label,
        validators=[DataRequired(), EqualTo("new_password", message="The two don't match.")],
    )


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    remember = BooleanField("Keep me logged in on this device")
    next = HiddenField()


class RegisterForm(FlaskForm):
    """Every field is checked on each submit, so a customer sees all that needs fixing at once,
    in the shop's own words rather than the form library's."""

    display_name = StringField(
        "Your name",
        validators=[
            DataRequired("Tell us your name, as you'd like it on your orders."),
            Length(max=80, message="Keep your name to 80 characters or fewer."),
        ],
    )
    email = EmailField(
        "Email",
        validators=[
            DataRequired("Enter your email address; your receipts go there."),
            Length(max=254, message="That email address is too long."),
        ],
    )
    password = PasswordField(
        "Password",
        validators=[
            DataRequired("Choose a password."),
            Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH, message=PASSWORD_RULE),
        ],
        description=f"{passwords.MIN_LENGTH} to {passwords.MAX_LENGTH} characters.",
    )
    next = HiddenField()

    def validate_email(self, field) -> None:
        try:
            users.normalise_email(field.data)
        except InvalidInput as error:
            raise ValidationError(error.message) from None


class PasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=passwords.MAX_LENGTH)]
    )
    new_password = new_password_field("New password")
    confirm_password = confirm_password_field("New password, again")


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])


class ResetPasswordForm(FlaskForm):
    new_password = new_password_field("New password")
    confirm_password = confirm_password_field("New password, again")


class AcceptInvitationForm(FlaskForm):
    display_name = StringField(
        "Your name or your workshop's",
        validators=[DataRequired(message="Tell customers who you are."), Length(max=80)],
        description="Customers see it on your drops. You can change it later.",
    )
    new_password = new_password_field("Choose a password")
    confirm_password = confirm_password_field("The password, again")
