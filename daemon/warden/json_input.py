"""JSON from outside: request bodies and the payload of signed links, parsed once.

Every route that takes JSON parses it here, so that what counts as acceptable JSON is
decided in one place: UTF-8 only, no NaN or Infinity, no integer of more digits than
Python converts (4300), nested at most MAX_DEPTH deep (a platform's answers, which
are large and read only for known fields: as deep as the decoder goes), and no text
holding a NUL or
an unpaired surrogate (no field takes one, and a database or a log line would choke
on it later, far from the request that brought it). Numbers with a fraction become
Decimal: exact, and never infinite.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Final

from warden.errors import WardenError

MAX_DEPTH: Final = 32  # arrays and objects; every body here is two or three deep
# Decoded UTF-8 holds no surrogate and valid JSON no raw NUL: an unsafe text can only
# come from one of these escapes. Without one (nearly always) no text needs a look.
_RISKY_ESCAPE: Final = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class JsonInputError(WardenError):
    """The input is not JSON this daemon accepts; the message says why (never quoting it)."""


def load_json(raw: bytes | str, *, max_depth: int | None = MAX_DEPTH) -> Any:
    """The value `raw` holds; JsonInputError if it is not acceptable JSON (see the module).

    `max_depth=None` (a platform's answers: large, and read only for known fields)
    leaves nesting to the decoder's own limit, so that only texts may need a look."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise JsonInputError("not UTF-8") from None
    try:
        value = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except RecursionError:
        too_deep = f"more than {max_depth}" if max_depth else "deeper than the decoder goes"
        raise JsonInputError(f"nested {too_deep}") from None
    except ValueError as e:  # not JSON, or an integer of too many digits
        raise JsonInputError(_where(e)) from None
    except ArithmeticError:  # decimal.InvalidOperation: an exponent of too many digits
        raise JsonInputError("not JSON: a number's exponent is out of range") from None
    texts = _RISKY_ESCAPE.search(text) is not None
    if texts or max_depth is not None:
        _check(value, max_depth, texts=texts)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _where(error: ValueError) -> str:
    """`not JSON: Expecting value at line 1, column 3`: where, never the text itself."""
    if isinstance(error, json.JSONDecodeError):
        return f"not JSON: {error.msg} at line {error.lineno}, column {error.colno}"
    return "not JSON: a number has too many digits, or a value is not JSON"


def _check(value: Any, max_depth: int | None, *, texts: bool) -> None:
    """JsonInputError for nesting beyond `max_depth` or (with `texts`) unsafe text;
    iterative, so that depth costs no stack."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if texts:
                _check_text(item)
        elif isinstance(item, dict | list):
            if max_depth is not None and depth >= max_depth:
                raise JsonInputError(f"nested more than {max_depth} deep")
            if isinstance(item, dict):
                if texts:
                    for key in item:
                        _check_text(key)
                children: Iterable[Any] = item.values()
            else:
                children = item
            pending.extend((child, depth + 1) for child in children if _walked(child, texts))


def _walked(child: Any, texts: bool) -> bool:
    return isinstance(child, dict | list) or (texts and isinstance(child, str))


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
