"""Certificates that prove themselves: an Ed25519 signature by the shop over what a certificate
claims — the shop, the batch, the serial, the certificate code and the day it was issued.

A certificate's link carries every signed field and the signature (:func:`signed_url`), so
anyone with the shop's public key (published at ``/.well-known/smallbatch-certificate-key.pem``)
can check it without asking the shop: ``python -m shop.verify_certificate URL``. The shop's own
certificate page checks the same signature and the claim against its records.

The private key comes from ``SHOP_CERTIFICATE_KEY`` (PEM; production refuses to start without
it); in development and tests it is generated once into ``SHOP_CERTIFICATE_KEY_FILE`` under
``instance/``. The message signed is versioned text, one field per line (:meth:`Claim.message`).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import current_app

from shop import clock

if TYPE_CHECKING:
    from shop.models import Unit

VERSION = "smallbatch-certificate-v1"
KEY_PATH = "/.well-known/smallbatch-certificate-key.pem"
_CODE = re.compile(r"[A-Za-z0-9_-]{8,64}")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
_NUMBER = re.compile(r"[1-9][0-9]{0,8}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{86}")  # 64 bytes, base64url without padding


class CertificateKeyError(ValueError):
    """The configured key is not an Ed25519 private key in PEM form."""


@dataclass(frozen=True)
class Claim:
    """What one certificate says, every field of it signed."""

    shop: str  # the shop's host, from SHOP_BASE_URL: "shop.example"
    product: str  # the product's slug: "highland-rye"
    batch: int  # the batch's number: 7
    serial: int  # the unit's number within the batch: 3
    code: str  # the certificate code in the link
    issued: date  # the UTC day the unit was numbered (its order paid)

    def message(self) -> bytes:
        fields = (
            VERSION,
            self.shop,
            self.product,
            str(self.batch),
            str(self.serial),
            self.code,
            self.issued.isoformat(),
        )
        return "\n".join(fields).encode()

    def query(self, signature: str) -> dict[str, str]:
        """The link's query: the fields the path and host do not already carry."""
        return {
            "p": self.product,
            "b": str(self.batch),
            "n": str(self.serial),
            "d": self.issued.isoformat(),
            "s": signature,
        }


# --- keys ----------------------------------------------------------------------------------


def private_key_from_pem(pem: str | bytes) -> Ed25519PrivateKey:
    """The key in ``pem`` (literal ``\\n`` accepted, as one-line environment values have)."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    text = text.replace("\\n", "\n").strip() + "\n"
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as error:
        raise CertificateKeyError(
            "SHOP_CERTIFICATE_KEY must be an Ed25519 private key in PEM form "
            "(openssl genpkey -algorithm ed25519)"
        ) from error
    if not isinstance(key, Ed25519PrivateKey):
        raise CertificateKeyError("SHOP_CERTIFICATE_KEY must be an Ed25519 key")
    return key


def private_key_from_file(path: str | Path) -> Ed25519PrivateKey:
    """The key in ``path``, generated there first if there is none (readable by the owner
    only). Several processes starting at once agree on one key: the file is created
    exclusively and whoever loses the race reads the winner's."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(pem)
    for _ in range(50):  # the winner may still be writing
        pem_read = path.read_bytes()
        if pem_read.strip().endswith(b"-----"):
            return private_key_from_pem(pem_read)
        time.sleep(0.01)
    return private_key_from_pem(path.read_bytes())


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_from_pem(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as error:
        raise CertificateKeyError("not a public key in PEM form") from error
    if not isinstance(key, Ed25519PublicKey):
        raise CertificateKeyError("not an Ed25519 public key")
    return key


# --- signing and checking ------------------------------------------------------------------


def sign(claim: Claim, key: Ed25519PrivateKey) -> str:
    return base64.urlsafe_b64encode(key.sign(claim.message())).rstrip(b"=").decode()


def verify(claim: Claim, signature: str, key: Ed25519PublicKey) -> bool:
    """True only for the shop's signature over exactly this claim; never raises."""
    if not _SIGNATURE.fullmatch(signature or ""):
        return False
    try:
        raw = base64.urlsafe_b64decode(signature + "==")
        key.verify(raw, claim.message())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def signed_url(base_url: str, claim: Claim, signature: str) -> str:
    """``{base}/u/{code}?p=…&b=…&n=…&d=…&s=…``: everything needed to check it offline."""
    return f"{base_url.rstrip('/')}/u/{claim.code}?{urlencode(claim.query(signature))}"


@dataclass(frozen=True)
class Presented:
    """A certificate link taken apart: the claim it makes and its signature (None when the
    link does not even have the shape of a signed certificate link)."""

    claim: Claim | None
    signature: str


def claim_from_parts(shop: str, code: str, query: dict[str, str]) -> Presented:
    """The claim a link makes, from its host, code and query; malformed parts give no claim."""
    product, batch, serial, day = (query.get(k, "") for k in ("p", "b", "n", "d"))
    signature = query.get("s", "")
    if not (
        _CODE.fullmatch(code)
        and _SLUG.fullmatch(product)
        and _NUMBER.fullmatch(batch)
        and _NUMBER.fullmatch(serial)
        and _DAY.fullmatch(day)
    ):
        return Presented(None, signature)
    try:
        issued = date.fromisoformat(day)
    except ValueError:
        return Presented(None, signature)
    return Presented(Claim(shop, product, int(batch), int(serial), code, issued), signature)


def claim_from_url(url: str) -> Presented:
    """The claim a full certificate URL makes (``https://shop/u/CODE?p=…``)."""
    parts = urlsplit(url)
    match = re.fullmatch(r"/u/([^/?#]+)", parts.path or "")
    query = {key: values[0] for key, values in parse_qs(parts.query).items() if values}
    return claim_from_parts(parts.netloc, match.group(1) if match else "", query)


# --- the shop's own certificates (in an app context) ---------------------------------------


def shop_key() -> Ed25519PrivateKey:
    """The shop's signing key, read once per app."""
    cached = current_app.extensions.get("certificate_key")
    if cached is None:
        config = current_app.config
        pem = config.get("SHOP_CERTIFICATE_KEY")
        cached = (
            private_key_from_pem(pem)
            if pem
            else private_key_from_file(config["SHOP_CERTIFICATE_KEY_FILE"])
        )
        current_app.extensions["certificate_key"] = cached
    return cached


def shop_host() -> str:
    return urlsplit(current_app.config.get("SHOP_BASE_URL") or "").netloc


def claim_for(unit: Unit) -> Claim:
    batch = unit.batch
    return Claim(
        shop=shop_host(),
        product=batch.product.slug,
        batch=batch.number,
        serial=unit.serial,
        code=unit.certificate_code,
        issued=clock.as_utc(unit.created_at).date(),
    )


def link_for(unit: Unit) -> str:
    """The unit's signed certificate link, on SHOP_BASE_URL (never the request's Host)."""
    claim = claim_for(unit)
    return signed_url(current_app.config["SHOP_BASE_URL"], claim, sign(claim, shop_key()))


def presented_matches(unit: Unit, query: dict[str, str]) -> bool:
    """True when a link's signed fields are this unit's and the shop's signature covers them."""
    presented = claim_from_parts(shop_host(), unit.certificate_code, query)
    return (
        presented.claim == claim_for(unit)
        and presented.claim is not None
        and verify(presented.claim, presented.signature, shop_key().public_key())
    )
