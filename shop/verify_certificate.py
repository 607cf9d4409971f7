"""Check a Small Batch certificate without trusting the shop's page.

    python -m shop.verify_certificate 'https://shop.example/u/CODE?p=…&b=…&n=…&d=…&s=…'
    python -m shop.verify_certificate URL --key smallbatch-certificate-key.pem   # offline

The link carries everything the shop signed (shop, product, batch, serial, code, issue day) and
the Ed25519 signature. With ``--key`` (the shop's public key, saved once from
``https://SHOP/.well-known/smallbatch-certificate-key.pem``) nothing is fetched; without it the
key is fetched from the link's own shop. Prints OK and what the certificate says, or exactly
why it is not genuine; exits 0 or 1 (2 when the key cannot be had).
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from shop import certificates


def _public_key(url: str, key_file: str | None):
    if key_file:
        return certificates.public_key_from_pem(Path(key_file).read_bytes())
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise certificates.CertificateKeyError(f"not a web address: {url}")
    key_url = f"{parts.scheme}://{parts.netloc}{certificates.KEY_PATH}"
    with urllib.request.urlopen(key_url, timeout=10) as answer:  # noqa: S310  # nosec B310 - http(s) checked above
        return certificates.public_key_from_pem(answer.read())


def check(url: str, key) -> tuple[bool, str]:
    """(genuine?, one line saying what the certificate claims or what is wrong)."""
    presented = certificates.claim_from_url(url)
    claim = presented.claim
    if claim is None:
        return False, (
            "NOT GENUINE: this is not a complete certificate link "
            "(it needs the code and the p, b, n and d fields)"
        )
    if not presented.signature:
        return False, "NOT GENUINE: the link carries no signature (s=)"
    if not certificates.verify(claim, presented.signature, key):
        return False, (
            "NOT GENUINE: the signature does not match what the link claims — "
            "a field was changed, or the shop did not sign it"
        )
    return True, (
        f"OK: genuine — No. {claim.serial} of {claim.product} Batch No. {claim.batch}, "
        f"certificate {claim.code}, issued {claim.issued.isoformat()} by {claim.shop}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the certificate link (from its QR code)")
    parser.add_argument("--key", help="the shop's public key (PEM file); checks offline")
    args = parser.parse_args(argv)
    try:
        key = _public_key(args.url, args.key)
    except (OSError, certificates.CertificateKeyError) as error:
        print(f"cannot get the shop's public key: {error}", file=sys.stderr)
        return 2
    genuine, line = check(args.url, key)
    print(line)
    return 0 if genuine else 1


if __name__ == "__main__":
    raise SystemExit(main())
