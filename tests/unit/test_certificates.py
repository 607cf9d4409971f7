"""Certificate signatures: Ed25519 over every field a certificate claims; any change fails."""

from __future__ import annotations

import dataclasses
import os
import stat
from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shop import certificates
from shop.certificates import CertificateKeyError, Claim
from shop.verify_certificate import check

KEY = Ed25519PrivateKey.generate()
CLAIM = Claim("shop.example", "highland-rye", 7, 3, "AbCdEfGh12345678", date(2026, 12, 5))


def test_a_signature_verifies_for_exactly_the_claim_it_was_made_for():
    signature = certificates.sign(CLAIM, KEY)

    assert certificates.verify(CLAIM, signature, KEY.public_key())


@pytest.mark.parametrize(
    "changed",
    [
        {"shop": "evil.example"},
        {"product": "lowland-rye"},
        {"batch": 8},
        {"serial": 4},
        {"code": "AbCdEfGh12345679"},
        {"issued": date(2026, 12, 6)},
    ],
    ids=lambda c: next(iter(c)),
)
def test_changing_any_signed_field_breaks_the_signature(changed):
    signature = certificates.sign(CLAIM, KEY)

    assert not certificates.verify(
        dataclasses.replace(CLAIM, **changed), signature, KEY.public_key()
    )


@pytest.mark.parametrize("signature", ["", "x", "A" * 86, "!" * 86, "A" * 200])
def test_a_malformed_or_foreign_signature_is_false_never_an_error(signature):
    assert not certificates.verify(CLAIM, signature, KEY.public_key())


def test_another_keys_signature_is_not_the_shops():
    other = Ed25519PrivateKey.generate()

    assert not certificates.verify(CLAIM, certificates.sign(CLAIM, other), KEY.public_key())


def test_a_signed_link_carries_every_field_and_reads_back_to_the_same_claim():
    url = certificates.signed_url("https://shop.example/", CLAIM, certificates.sign(CLAIM, KEY))

    presented = certificates.claim_from_url(url)

    assert url.startswith("https://shop.example/u/AbCdEfGh12345678?p=highland-rye&b=7&n=3&")
    assert presented.claim == CLAIM
    assert certificates.verify(presented.claim, presented.signature, KEY.public_key())


def test_the_verifier_says_ok_for_a_genuine_link_and_names_what_it_claims():
    url = certificates.signed_url("https://shop.example", CLAIM, certificates.sign(CLAIM, KEY))

    genuine, line = check(url, KEY.public_key())

    assert genuine
    assert line.startswith("OK: genuine — No. 3 of highland-rye Batch No. 7")


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda u: u.replace("n=3", "n=4"), "signature does not match"),
        (lambda u: u.replace("shop.example", "copy.example"), "signature does not match"),
        (lambda u: u.split("&s=")[0], "no signature"),
        (lambda u: u.replace("d=2026-12-05", "d=2026-13-05"), "not a complete certificate link"),
        (lambda u: u.replace("/u/", "/x/"), "not a complete certificate link"),
    ],
    ids=["serial", "shop", "signature removed", "impossible day", "not a certificate path"],
)
def test_the_verifier_says_exactly_why_a_changed_link_is_not_genuine(edit, reason):
    url = certificates.signed_url("https://shop.example", CLAIM, certificates.sign(CLAIM, KEY))

    genuine, line = check(edit(url), KEY.public_key())

    assert not genuine
    assert line.startswith("NOT GENUINE") and reason in line


def test_a_key_file_is_generated_once_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "keys" / "certificate_key.pem"

    first = certificates.private_key_from_file(path)
    second = certificates.private_key_from_file(path)

    assert certificates.public_key_pem(first) == certificates.public_key_pem(second)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize(
    "pem", ["", "not a key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"]
)
def test_a_configured_key_that_is_not_an_ed25519_pem_is_refused_by_name(pem):
    with pytest.raises(CertificateKeyError, match="SHOP_CERTIFICATE_KEY"):
        certificates.private_key_from_pem(pem)


def test_a_one_line_environment_value_with_escaped_newlines_is_read():
    from cryptography.hazmat.primitives import serialization

    pem = KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()

    loaded = certificates.private_key_from_pem(pem.replace("\n", "\\n"))

    assert certificates.public_key_pem(loaded) == certificates.public_key_pem(KEY)
