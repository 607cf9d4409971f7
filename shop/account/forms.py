from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length

from shop import passwords


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    remember = BooleanField("Keep me logged in on this device")
    next = HiddenField()


class RegisterForm(FlaskForm):
    display_name = StringField("Your name", validators=[DataRequired(), Length(max=80)])
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH)],
        description=f"{passwords.MIN_LENGTH} to {passwords.MAX_LENGTH} characters.",
    )
    next = HiddenField()


class LogoutForm(FlaskForm):
    pass


class PasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password", validators=[DataRequired(), Length(max=passwords.MAX_LENGTH)]
    )
    new_password = PasswordField(
        "New password",
        validators=[DataRequired(), Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH)],
        description=f"{passwords.MIN_LENGTH} to {passwords.MAX_LENGTH} characters.",
    )
    confirm_password = PasswordField(
        "New password, again",
        validators=[DataRequired(), EqualTo("new_password", message="The two don't match.")],
    )


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])


class ResetPasswordForm(FlaskForm):
    new_password = PasswordField(
        "New password",
        validators=[DataRequired(), Length(min=passwords.MIN_LENGTH, max=passwords.MAX_LENGTH)],
        description=f"{passwords.MIN_LENGTH} to {passwords.MAX_LENGTH} characters.",
    )
    confirm_password = PasswordField(
        "New password, again",
        validators=[DataRequired(), EqualTo("new_password", message="The two don't match.")],
    )


class ResendVerificationForm(FlaskForm):
    pass
