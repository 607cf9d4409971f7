"""Check a Small Batch draw without trusting the shop.

    python -m shop.verify_draw https://shop.example/drops/SLUG/draw
    python -m shop.verify_draw draw.json                    # a copy saved earlier
    python -m shop.verify_draw URL --entry=ENTRY_ID         # and: is my entry listed?
    python -m shop.verify_draw URL --commitment HEX         # the commitment you saw before

Recomputes, from the published seed and entries alone, the commitment (SHA-256 of the seed)
and each batch's winners (entries in ascending HMAC-SHA256(seed, entry id) order, each given
what it asked for while units remain), and compares them with what the shop published. Prints
OK, or exactly what differs; exits 0 or 1 (2 when the draw cannot be read).

Only the standard library, and the rule is written out here again on purpose, apart from the
shop's own code (shop/draws.py): copy this file anywhere and it still checks a draw.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

FORMAT = "smallbatch-draw-v1"


def commitment(seed: str) -> str:
    return hashlib.sha256(seed.encode("ascii")).hexdigest()


def order(seed: str, ids: list[str]) -> list[str]:
    def key(entry_id: str) -> tuple[str, str]:
        digest = hmac.new(seed.encode("ascii"), entry_id.encode("ascii"), hashlib.sha256)
        return digest.hexdigest(), entry_id

    return sorted(ids, key=key)


def winners(seed: str, entries: list[dict], units: int) -> list[tuple[str, int]]:
    quantity = {e["id"]: e["quantity"] for e in entries}
    drawn = []
    for entry_id in order(seed, list(quantity)):
        if units <= 0:
            break
        given = min(quantity[entry_id], units)
        drawn.append((entry_id, given))
        units -= given
    return drawn


def check(draw: dict, *, entry: str | None = None, seen: str | None = None) -> list[str]:
    """Everything that differs between the published draw and the rule; empty when it holds."""
    problems = []
    if draw.get("format") != FORMAT:
        return [f"unknown format {draw.get('format')!r} (this checks {FORMAT})"]
    seed, published = draw.get("seed"), draw.get("commitment")
    if seen is not None and seen.lower() != (published or "").lower():
        problems.append(f"the commitment is {published}, not the {seen} you saw before")
    if not seed:
        return [*problems, "the draw has not run yet: no seed is published, nothing to check"]
    if commitment(seed) != published:
        problems.append(
            f"the seed does not match the commitment: SHA-256(seed) is {commitment(seed)}, "
            f"the shop committed to {published}"
        )
    listed = set()
    for batch in draw.get("batches", []):
        name = f"{batch.get('product')} Batch No. {batch.get('batch')}"
        entries = batch.get("entries") or []
        ids = [e["id"] for e in entries]
        listed.update(ids)
        if len(set(ids)) != len(ids):
            problems.append(f"{name}: an entry id is listed twice")
        expected = winners(seed, entries, int(batch.get("units") or 0))
        shown = [(w["id"], w["units"]) for w in batch.get("winners") or []]
        if shown != expected:
            problems.extend(_differences(name, expected, shown, set(ids)))
        rest = order(seed, ids)[len(expected) :]
        passed = [p["id"] for p in batch.get("passed_on") or []]
        if passed != rest[: len(passed)]:
            problems.append(
                f"{name}: units passed on after the draw did not go down the draw order "
                f"(passed to {', '.join(passed)})"
            )
    if entry is not None and entry not in listed:
        problems.append(f"your entry {entry} is not in the published list")
    return problems


def _differences(
    name: str, expected: list[tuple[str, int]], shown: list[tuple[str, int]], ids: set[str]
) -> list[str]:
    lines = []
    want, got = dict(expected), dict(shown)
    for entry_id, units in shown:
        if entry_id not in ids:
            lines.append(f"{name}: winner {entry_id} is not among the published entries")
        elif entry_id not in want:
            lines.append(f"{name}: {entry_id} is published as a winner; the rule does not draw it")
        elif want[entry_id] != units:
            lines.append(
                f"{name}: {entry_id} is published with {units} units, "
                f"the rule gives {want[entry_id]}"
            )
    for entry_id, units in expected:
        if entry_id not in got:
            lines.append(
                f"{name}: the rule draws {entry_id} ({units} units), "
                "but it is not published as a winner"
            )
    if not lines:
        lines.append(f"{name}: the winners are published in another order than the draw order")
    return lines


def load(source: str) -> dict:
    """A draw from a saved JSON file, or from the shop (``…/draw`` or ``…/draw.json``)."""
    parts = urlsplit(source)
    if parts.scheme in ("http", "https"):
        url = source.split("?", 1)[0].split("#", 1)[0]
        if not url.endswith(".json"):
            url = url.rstrip("/") + ".json"
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310  # nosec B310 - http(s) checked above
            return json.load(answer)
    return json.loads(Path(source).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="the draw's address (…/drops/SLUG/draw) or a JSON file")
    parser.add_argument("--entry", help="your entry id: check that it is listed")
    parser.add_argument("--commitment", help="the commitment you saw before entries opened")
    args = parser.parse_args(argv)
    try:
        draw = load(args.source)
    except (OSError, ValueError) as error:
        print(f"cannot read the draw: {error}", file=sys.stderr)
        return 2
    problems = check(draw, entry=args.entry, seen=args.commitment)
    if problems:
        for line in problems:
            print(f"DIFFERS: {line}")
        return 1
    batches = draw.get("batches", [])
    print(
        f"OK: {draw.get('title')} — the seed matches the commitment {draw['commitment']}, and "
        + "; ".join(
            f"{b['product']} Batch No. {b['batch']}: {len(b['winners'])} winners of "
            f"{len(b['entries'])} entries for {b['units']} units"
            for b in batches
        )
        + (f"; entry {args.entry} is listed" if args.entry else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
