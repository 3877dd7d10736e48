"""Strict JSON for signature documents: UTF-8 only, no duplicate keys, exact member sets.

Mirrors containers/image's "paranoid" unmarshalling: an attacker must not be able to hide a
second value behind a duplicate key, or smuggle fields a verifier ignores.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any


class StrictJSONError(ValueError):
    """The document is not the JSON shape a signature format requires."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise StrictJSONError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_constants(name: str) -> Any:
    raise StrictJSONError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """Parse JSON (bytes must be UTF-8), rejecting duplicate keys and NaN / Infinity."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, object_pairs_hook=_unique_object, parse_constant=_no_constants)
    except UnicodeDecodeError as err:
        raise StrictJSONError("not UTF-8") from err
    except json.JSONDecodeError as err:
        raise StrictJSONError(f"not valid JSON ({err.msg} at offset {err.pos})") from err


def exact_object(value: Any, fields: Collection[str], where: str) -> dict[str, Any]:
    """`value` as an object that has exactly `fields` as members, or StrictJSONError."""
    if not isinstance(value, dict):
        raise StrictJSONError(f"{where} is not a JSON object")
    missing = sorted(set(fields) - value.keys())
    unknown = sorted(value.keys() - set(fields))
    if missing:
        raise StrictJSONError(f"{where} lacks {', '.join(missing)}")
    if unknown:
        raise StrictJSONError(f"{where} has unknown member(s) {', '.join(unknown)}")
    return value


def string_member(obj: dict[str, Any], key: str, where: str) -> str:
    """The string member `key` of `obj`, or StrictJSONError."""
    value = obj.get(key)
    if not isinstance(value, str):
        raise StrictJSONError(f"{where}.{key} is not a string")
    return value
