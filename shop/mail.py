"""Email: rendering a message (HTML + text in the shop's look), building it safely, and the
transports that carry it — SMTP (``SMTP_URL``) or, in development, a local mailbox directory
that ``/dev/mailbox`` reads. Nothing here runs in a request: the worker sends (shop/outbox.py).

Why the standard library (``email.message.EmailMessage`` + ``smtplib``) and no Flask mail
extension: the worker is not a request and needs no app-bound mail object; the standard
library's ``email.policy.default`` refuses CR/LF in header values itself, and SMTP, STARTTLS
and implicit TLS are the three things we need from a transport. See docs/MESSAGES.md.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import smtplib
import ssl
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from flask import current_app, render_template

from shop import clock

SMTP_SCHEMES = ("smtp", "smtps")
STARTTLS_PORT = 587


class MailSettingError(RuntimeError):
    pass


def one_line(value: str | None, *, limit: int = 200) -> str:
    """Text safe for a header: every run of whitespace (CR, LF, tabs) becomes one space."""
    return " ".join((value or "").split())[:limit]


def link(endpoint: str, **values: object) -> str:
    """An absolute link into the shop from ``SHOP_BASE_URL`` (no request is needed)."""
    base = urlsplit(current_app.config["SHOP_BASE_URL"])
    adapter = current_app.url_map.bind(
        base.netloc, script_name=base.path or "/", url_scheme=base.scheme or "https"
    )
    return adapter.build(endpoint, values, force_external=True)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(kind: str, *, subject: str, **context: object) -> Rendered:
    """``templates/mail/<kind>.txt`` and ``.html``, with the subject and shop links in reach."""
    context.setdefault("shop_url", link("storefront.home"))
    context["subject"] = one_line(subject)
    return Rendered(
        subject=one_line(subject),
        text=render_template(f"mail/{kind}.txt", **context).strip() + "\n",
        html=render_template(f"mail/{kind}.html", **context),
    )


def sender() -> Address:
    configured = current_app.config.get("MAIL_FROM")
    if configured:
        name, _, address = configured.rpartition("<")
        if address:
            return Address(one_line(name.strip().strip('"')), addr_spec=address.rstrip(">").strip())
        return Address("Small Batch", addr_spec=configured.strip())
    host = urlsplit(current_app.config["SHOP_BASE_URL"]).hostname or "localhost"
    return Address("Small Batch", addr_spec=f"no-reply@{host}")


def build(
    *,
    recipient: str,
    subject: str,
    text: str,
    html: str,
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """A multipart/alternative message (text first, HTML preferred). ``recipient`` is an address
    already validated by users.normalise_email; header values are kept to one line."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender()
    message["To"] = Address(addr_spec=recipient)
    message["Subject"] = one_line(subject)
    message["Date"] = clock.now()
    message["Message-ID"] = message_id or make_msgid(domain=sender().domain or None)
    for name, value in (headers or {}).items():
        message[one_line(name, limit=60)] = one_line(value, limit=900)
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


# --- transports ----------------------------------------------------------------------------


class Transport(Protocol):
    def send(self, message: EmailMessage) -> None: ...


@dataclass(frozen=True)
class SmtpTransport:
    """``smtp://host:port`` (a relay, plain), ``smtp://user:pass@host:587`` (STARTTLS, required
    whenever there are credentials or the port is 587), ``smtps://user:pass@host:465``."""

    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None
    timeout: float

    @classmethod
    def from_url(cls, url: str, *, timeout: float) -> SmtpTransport:
        parts = urlsplit(url)
        if parts.scheme not in SMTP_SCHEMES or not parts.hostname:
            raise MailSettingError(
                "SMTP_URL must look like smtp://user:password@host:587, smtps://user:password@"
                "host:465 or smtp://relay-host:25"
            )
        try:
            port = parts.port
        except ValueError:
            raise MailSettingError("SMTP_URL has a port that is not a number") from None
        default_port = 465 if parts.scheme == "smtps" else (587 if parts.username else 25)
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=port or default_port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=timeout,
        )

    @property
    def starttls(self) -> bool:
        return self.scheme == "smtp" and (self.username is not None or self.port == STARTTLS_PORT)

    def send(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        if self.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=context
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            if self.starttls:
                client.starttls(context=context)  # refuses to go on in plain text
            if self.username is not None:
                client.login(self.username, self.password or "")
            client.send_message(message)

    def __repr__(self) -> str:  # never the password
        return f"SmtpTransport({self.scheme}://{self.host}:{self.port})"


@dataclass(frozen=True)
class MailboxTransport:
    """Development without a mail server: each message becomes a file in ``directory``."""

    directory: Path

    def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = clock.now().strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}-{os.getpid()}-{secrets.token_hex(4)}.eml"
        partial = self.directory / f".{name}.partial"
        partial.write_bytes(message.as_bytes())
        partial.replace(self.directory / name)  # readers never see half a message


def uses_mailbox(app_config) -> bool:
    return not app_config.get("SMTP_URL") and app_config.get("ENV_NAME") in (
        "development",
        "testing",
    )


def transport() -> Transport:
    """SMTP_URL when set (every environment); else the development mailbox."""
    config = current_app.config
    if config.get("SMTP_URL"):
        return SmtpTransport.from_url(config["SMTP_URL"], timeout=config["SHOP_SMTP_TIMEOUT"])
    if uses_mailbox(config):
        return MailboxTransport(Path(config["SHOP_MAILBOX_DIR"]))
    raise MailSettingError("set SMTP_URL: this environment has no mailbox to deliver to")


# --- the development mailbox ---------------------------------------------------------------


@dataclass(frozen=True)
class MailboxEntry:
    name: str
    to: str
    subject: str
    date: str
    text: str
    html: str
    headers: list[tuple[str, str]]


def mailbox_entries(directory: Path) -> list[str]:
    """Names of the messages in the mailbox, newest first."""
    if not directory.is_dir():
        return []
    return sorted((p.name for p in directory.glob("*.eml")), reverse=True)


def read_mailbox_entry(directory: Path, name: str) -> MailboxEntry | None:
    if name not in mailbox_entries(directory):  # only names the mailbox lists: no paths
        return None
    with contextlib.suppress(OSError):
        raw = (directory / name).read_bytes()
        parsed = BytesParser(policy=policy.default).parsebytes(raw)
        text = parsed.get_body(preferencelist=("plain",))
        html = parsed.get_body(preferencelist=("html",))
        return MailboxEntry(
            name=name,
            to=str(parsed["To"]),
            subject=str(parsed["Subject"]),
            date=str(parsed["Date"]),
            text=text.get_content() if text is not None else "",
            html=html.get_content() if html is not None else "",
            headers=[(key, str(value)) for key, value in parsed.items()],
        )
    return None
