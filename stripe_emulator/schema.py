"""Parameter validation driven by stripe-python's typed request params (docs/STRIPE.md §8).

The SDK ships a ``TypedDict`` per endpoint (``stripe.params.checkout.SessionCreateParams`` …).
Their ``__annotations__`` list the allowed keys and ``__required_keys__`` the required ones; nested
``TypedDict`` classes describe nested hashes. ``typing.get_type_hints`` cannot resolve these
classes, so annotations (often string forward references such as
``"Literal['auto', 'required']|str"``) are read and parsed here directly.

:func:`validate` checks a decoded form tree against such a class and returns a normalised copy:
integers as ``int``, booleans as ``bool``, lists as ``list``, decimals as ``str``.
"""

from __future__ import annotations

import ast
import decimal
import functools
import re
import sys
import types
import typing
from dataclasses import dataclass
from typing import Any

from stripe._request_options import RequestOptions

from stripe_emulator.errors import ParamError, parameter_missing, parameter_unknown

#: Keys the SDK's params classes inherit from ``RequestOptions``: client options, not API params.
REQUEST_OPTION_KEYS = frozenset(RequestOptions.__annotations__)

_INTEGER = re.compile(r"^-?\d+$")
_DECIMAL = re.compile(r"^-?(\d+(\.\d*)?|\.\d+)$")


# --- schema nodes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scalar:
    kind: str  # "str", "int", "bool", "float", "decimal", "any"


@dataclass(frozen=True)
class Lit:
    values: frozenset[Any]


@dataclass(frozen=True)
class ListOf:
    item: Node


@dataclass(frozen=True)
class MapOf:
    """A string → string hash such as ``metadata``."""


@dataclass(frozen=True)
class Obj:
    cls: type


@dataclass(frozen=True)
class AnyOf:
    options: tuple[Node, ...]


Node = Scalar | Lit | ListOf | MapOf | Obj | AnyOf

_SCALARS: dict[Any, str] = {
    str: "str",
    int: "int",
    bool: "bool",
    float: "float",
    decimal.Decimal: "decimal",
}
_NAMED_SCALARS = {
    "str": "str",
    "int": "int",
    "bool": "bool",
    "float": "float",
    "Decimal": "decimal",
}


def node_for(annotation: Any, module: types.ModuleType) -> Node | None:
    """Translate one annotation into a schema node (``None`` for ``NoneType``)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.NotRequired, typing.Required):
        return node_for(args[0], module)
    if isinstance(annotation, typing.ForwardRef):
        return node_from_string(annotation.__forward_arg__, module)
    if isinstance(annotation, str):
        return node_from_string(annotation, module)
    if origin in (typing.Union, types.UnionType):
        return _any_of([node_for(arg, module) for arg in args])
    if origin is list:
        item = node_for(args[0], module) if args else Scalar("any")
        return ListOf(item or Scalar("any"))
    if origin is dict or annotation is dict:
        return MapOf()
    if origin is typing.Literal:
        return Lit(frozenset(args))
    if annotation is type(None):
        return None
    if annotation in _SCALARS:
        return Scalar(_SCALARS[annotation])
    if _is_typeddict(annotation):
        return Obj(annotation)
    return Scalar("any")


def _is_typeddict(annotation: Any) -> bool:
    # The SDK builds its params with typing_extensions.TypedDict, which typing.is_typeddict
    # does not recognise on Python 3.11.
    return (
        isinstance(annotation, type)
        and issubclass(annotation, dict)
        and hasattr(annotation, "__required_keys__")
    )


def node_from_string(text: str, module: types.ModuleType) -> Node | None:
    """Parse a string annotation such as ``"Literal['a', 'b']|List[SessionCreateParamsX]"``."""
    parts = _split_top_level(text, "|")
    if len(parts) > 1:
        return _any_of([node_from_string(part, module) for part in parts])
    text = text.strip()
    if text.startswith("Literal[") and text.endswith("]"):
        values = ast.literal_eval("(" + text[len("Literal[") : -1] + ",)")
        return Lit(frozenset(values))
    if text.startswith("List[") and text.endswith("]"):
        item = node_from_string(text[len("List[") : -1], module)
        return ListOf(item or Scalar("any"))
    if text.split("[", 1)[0] in ("Dict", "Mapping", "UntypedStripeObject"):
        return MapOf()
    if text == "None":
        return None
    if text in _NAMED_SCALARS:
        return Scalar(_NAMED_SCALARS[text])
    target = getattr(module, text, None)
    if target is not None:
        return node_for(target, sys.modules.get(getattr(target, "__module__", ""), module))
    return Scalar("any")


def _split_top_level(text: str, separator: str) -> list[str]:
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _any_of(nodes: list[Node | None]) -> Node:
    present = tuple(dict.fromkeys(node for node in nodes if node is not None))
    if len(present) == 1:
        return present[0]
    # The SDK types enums as ``Literal[...] | str`` for forward compatibility; the API itself
    # rejects values outside the enum, so the emulator does too.
    if any(isinstance(node, Lit) and node.values - {""} for node in present):
        present = tuple(node for node in present if node != Scalar("str"))
        if len(present) == 1:
            return present[0]
    return AnyOf(present)


@functools.cache
def fields_of(cls: type) -> tuple[dict[str, Node], frozenset[str]]:
    """``(key → node, required keys)`` for a TypedDict, leaving out request-option keys."""
    module = sys.modules[cls.__module__]
    fields: dict[str, Node] = {}
    for key, annotation in cls.__annotations__.items():
        if key in REQUEST_OPTION_KEYS and _is_request_options(cls):
            continue
        node = node_for(annotation, module)
        fields[key] = node or Scalar("any")
    return fields, frozenset(getattr(cls, "__required_keys__", frozenset()))


def _is_request_options(cls: type) -> bool:
    annotations = cls.__annotations__
    return all(key in annotations for key in REQUEST_OPTION_KEYS)


# --- validation ---------------------------------------------------------------------------

_HINTS = {
    "payment_method_types": "Did you mean allowed_payment_method_types? "
    "(payment_method_types is not a create parameter in this API version)",
}


def validate(cls: type, tree: dict[str, Any]) -> dict[str, Any]:
    """Validate a decoded form tree against an SDK params TypedDict; return normalised params.

    Raises :class:`ParamError` (400, not stored for idempotency) on the first problem, with
    ``param`` set to the bracketed path Stripe would report.
    """
    return _coerce_obj(cls, tree, path=None)


def _join(path: str | None, key: str) -> str:
    return key if path is None else f"{path}[{key}]"


def _coerce_obj(cls: type, value: Any, path: str | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ParamError(f"Invalid object: {path} must be a hash", param=path)
    fields, required = fields_of(cls)
    result: dict[str, Any] = {}
    for key, raw in value.items():
        child_path = _join(path, key)
        node = fields.get(key)
        if node is None:
            raise parameter_unknown(child_path, _HINTS.get(key) if path is None else None)
        result[key] = _coerce(node, raw, child_path)
    for key in sorted(required):
        if key not in value:
            raise parameter_missing(_join(path, key))
    return result


def _coerce(node: Node, value: Any, path: str) -> Any:
    if isinstance(node, Obj):
        return _coerce_obj(node.cls, value, path)
    if isinstance(node, ListOf):
        return _coerce_list(node, value, path)
    if isinstance(node, MapOf):
        return _coerce_map(value, path)
    if isinstance(node, Lit):
        return _coerce_literal(node, value, path)
    if isinstance(node, AnyOf):
        return _coerce_any_of(node, value, path)
    return _coerce_scalar(node, value, path)


def _coerce_list(node: ListOf, value: Any, path: str) -> list[Any]:
    if value == "":
        return []
    if isinstance(value, list):
        items = list(enumerate(value))
    elif isinstance(value, dict) and all(key.isdigit() for key in value):
        items = sorted(((int(key), item) for key, item in value.items()), key=lambda kv: kv[0])
    else:
        raise ParamError(f"Invalid array: {path} must be a list", param=path)
    return [_coerce(node.item, item, f"{path}[{index}]") for index, item in items]


def _coerce_map(value: Any, path: str) -> dict[str, str]:
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise ParamError(f"Invalid hash: {path} must be a hash of strings", param=path)
    result = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise ParamError(
                f"Invalid value for {path}[{key}]: metadata values must be strings",
                param=f"{path}[{key}]",
            )
        result[key] = item
    return result


def _coerce_literal(node: Lit, value: Any, path: str) -> Any:
    if isinstance(value, str):
        for allowed in node.values:
            if value == str(allowed).lower() if isinstance(allowed, bool) else value == allowed:
                return allowed
    choices = sorted(str(v) for v in node.values if v != "")
    if not choices:
        raise ParamError(f"Invalid {path}: only an empty string is allowed here", param=path)
    listed = choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + f", or {choices[-1]}"
    raise ParamError(f"Invalid {path}: must be one of {listed}", param=path)


def _coerce_any_of(node: AnyOf, value: Any, path: str) -> Any:
    errors: list[tuple[Node, ParamError]] = []
    for option in _ordered_options(node.options, value):
        try:
            return _coerce(option, value, path)
        except ParamError as error:
            errors.append((option, error))
    raise errors[0][1]


def _ordered_options(options: tuple[Node, ...], value: Any) -> list[Node]:
    """Try the options that fit the value's shape first, so the reported error is the apt one."""

    def fits(option: Node) -> bool:
        if isinstance(value, dict):
            return isinstance(option, Obj | MapOf | ListOf)
        if value == "":
            return isinstance(option, Lit) and "" in option.values
        return isinstance(option, Scalar | Lit)

    return sorted(options, key=lambda option: not fits(option))


def _coerce_scalar(node: Scalar, value: Any, path: str) -> Any:
    if isinstance(value, dict | list):
        raise ParamError(f"Invalid {path}: expected a single value, not a hash", param=path)
    if node.kind == "any":
        return value
    if value == "":
        raise ParamError(
            f"You passed an empty string for '{path}'. We assume empty values are an attempt to "
            f"unset a parameter; however '{path}' cannot be unset. You should remove '{path}' "
            "from your request or supply a non-empty value.",
            param=path,
            code="parameter_invalid_empty",
        )
    if node.kind == "int":
        if not _INTEGER.match(value):
            raise ParamError(
                f"Invalid integer: {value}", param=path, code="parameter_invalid_integer"
            )
        return int(value)
    if node.kind == "bool":
        if value not in ("true", "false"):
            raise ParamError(f"Invalid boolean: {value}", param=path)
        return value == "true"
    if node.kind in ("float", "decimal"):
        if not _DECIMAL.match(value):
            raise ParamError(f"Invalid decimal: {value}", param=path)
        return float(value) if node.kind == "float" else value
    return value
