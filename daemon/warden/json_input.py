"""JSON from outside: request bodies and the payload of signed links, parsed once.

Every route that takes JSON parses it here, so that what counts as acceptable JSON is
decided in one place: UTF-8 only, no NaN or Infinity, no integer of more digits than
Python converts (4300), nested at most MAX_DEPTH deep, and no text holding a NUL or
an unpaired surrogate (no field takes one, and a database or a log line would choke
on it later, far from the request that brought it). Numbers with a fraction become
Decimal: exact, and never infinite.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, Final

from warden.errors import WardenError

MAX_DEPTH: Final = 32  # arrays and objects; every body here is two or three deep
# Decoded UTF-8 holds no surrogate and valid JSON no raw NUL: an unsafe text can only
# come from one of these escapes. Without one (nearly always) no text needs a look.
_RISKY_ESCAPE: Final = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class JsonInputError(WardenError):
    """The input is not JSON this daemon accepts; the message says why (never quoting it)."""


def load_json(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The value `raw` holds; JsonInputError if it is not acceptable JSON (see the module)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise JsonInputError("not UTF-8") from None
    try:
        value = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except RecursionError:
        raise JsonInputError(f"nested more than {max_depth} deep") from None
    except ValueError as e:  # not JSON, or an integer of too many digits
        raise JsonInputError(_where(e)) from None
    except ArithmeticError:  # decimal.InvalidOperation: an exponent of too many digits
        raise JsonInputError("not JSON: a number's exponent is out of range") from None
    if _nesting(value, beyond=max_depth) > max_depth:
        raise JsonInputError(f"nested more than {max_depth} deep")
    if _RISKY_ESCAPE.search(text) is not None:
        _check_texts(value)
    return value


def _nesting(value: Any, *, beyond: int) -> int:
    """How deep the arrays and objects of `value` nest, counted a level at a time and no
    further than `beyond` + 1. Only containers are visited, by exact type (what
    json.loads makes): a page of 100 workspaces costs half a millisecond."""
    deepest = 0
    level = [value] if type(value) is dict or type(value) is list else []
    while level and deepest <= beyond:
        deepest += 1
        below = []
        for item in level:
            for child in item.values() if type(item) is dict else item:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _where(error: ValueError) -> str:
    """`not JSON: Expecting value at line 1, column 3`: where, never the text itself."""
    if isinstance(error, json.JSONDecodeError):
        return f"not JSON: {error.msg} at line {error.lineno}, column {error.colno}"
    return "not JSON: a number has too many digits, or a value is not JSON"


def _check_texts(value: Any) -> None:
    """JsonInputError for any unsafe text, key or value; iterative: depth costs no stack."""
    pending: list[Any] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            for key in item:
                _check_text(key)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _check_text(text: str) -> None:
    if not safe_text(text):
        raise JsonInputError("a text holds a NUL character or an unpaired surrogate")


def safe_text(text: str) -> bool:
    """No NUL and no unpaired surrogate: text a database, a log line and UTF-8 all take.
    (Also for text from outside that is not JSON: path segments, query parameters.)"""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


__all__ = ["MAX_DEPTH", "JsonInputError", "load_json", "safe_text"]
