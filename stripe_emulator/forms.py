"""Decoding Stripe's bracket notation (``line_items[0][price_data][currency]=eur``).

The result is a tree of dicts whose leaves are strings. List indices stay as string keys
(``{"0": {...}}``): only the schema knows whether ``metadata[0]`` is a list item or a map key,
so turning index dicts into lists is left to :mod:`stripe_emulator.schema`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from stripe_emulator.errors import ParamError

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")

FormTree = dict[str, Any]


def split_key(key: str) -> list[str]:
    """``"a[b][0]"`` → ``["a", "b", "0"]``; an empty segment (``a[]``) means "append"."""
    match = _KEY.match(key)
    if not match:
        raise ParamError(f"Invalid parameter name: {key}", param=key)
    return [match.group(1), *_SEGMENT.findall(match.group(2))]


def bracket_path(parts: Iterable[str]) -> str:
    """``["a", "b", "0"]`` → ``"a[b][0]"`` (how Stripe names a parameter in errors)."""
    head, *rest = list(parts)
    return head + "".join(f"[{part}]" for part in rest)


def decode_pairs(pairs: Iterable[tuple[str, str]]) -> FormTree:
    """Build the nested parameter tree from decoded ``(key, value)`` pairs, in order."""
    tree: FormTree = {}
    for key, value in pairs:
        parts = split_key(key)
        node = tree
        for depth, part in enumerate(parts):
            if part == "":
                part = str(len(node))
            last = depth == len(parts) - 1
            if last:
                if isinstance(node.get(part), dict):
                    raise ParamError(
                        f"Invalid value for {bracket_path(parts[: depth + 1])}: "
                        "it was sent both as a value and as a hash",
                        param=bracket_path(parts[: depth + 1]),
                    )
                node[part] = value
            else:
                child = node.get(part)
                if child is None:
                    child = node[part] = {}
                elif not isinstance(child, dict):
                    raise ParamError(
                        f"Invalid hash: {bracket_path(parts[: depth + 1])}",
                        param=bracket_path(parts[: depth + 1]),
                    )
                node = child
    return tree
