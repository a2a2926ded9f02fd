"""Input validation that answers in the seed's 422 shape: ``{"detail": [{"loc", "msg", "type"}, ...]}``.

The messages and ``type`` codes follow pydantic's, which the seed (FastAPI) produced, so existing clients
that show them keep working.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


USERNAME_RULE = "Username must consist of Latin letters only and be between 5 and 64 characters long."
PASSWORD_RULE = (
    "Password must be 8-256 characters long, include Latin letters (uppercase and lowercase), "
    "numbers, and at least one special character."
)
_PASSWORD_SPECIALS = re.compile(r'[!@#$%^&*(),.?":{}|<>=_]')

Loc = tuple[str | int, ...]


class ValidationFailed(Exception):
    """Rendered as HTTP 422 by the error middleware."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def problem(loc: Loc, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": list(loc), "msg": msg, "type": kind}


def fail(loc: Loc, msg: str, kind: str) -> ValidationFailed:
    return ValidationFailed([problem(loc, msg, kind)])


def username_problem(value: str) -> str | None:
    if re.fullmatch(r"[A-Za-z]{5,64}", value):
        return None
    return USERNAME_RULE


def password_problem(value: str) -> str | None:
    checks = (
        8 <= len(value) <= 256,
        re.search(r"[A-Z]", value),
        re.search(r"[a-z]", value),
        re.search(r"\d", value),
        _PASSWORD_SPECIALS.search(value),
    )
    return None if all(checks) else PASSWORD_RULE


INT64_MAX = 2**63 - 1
"""The largest integer every supported database column holds."""
INT64_RANGE = (-INT64_MAX, INT64_MAX)
ID_RANGE = (-(2**31), 2**31 - 1)
"""What a row id column holds: PostgreSQL's ``serial`` is 32-bit (SQLite's ids would hold more, but count up
from 1 and never get there). An id outside it is refused before a query could fail on it."""


_TYPE_NAMES = {str: ("string_type", "a valid string"), bool: ("bool_type", "a valid boolean"),
               int: ("int_type", "a valid integer"), float: ("float_type", "a valid number"),
               dict: ("dict_type", "a valid dictionary")}


@dataclass(frozen=True)
class Field:
    """One key of a JSON object body."""

    name: str
    kind: type
    required: bool = False
    check: Callable[[Any], str | None] | None = None
    choices: tuple[str, ...] = ()
    bounds: tuple[int, int] = INT64_RANGE
    """For an integer field: the values it may take (:data:`ID_RANGE` for a row id)."""
    fields: tuple[Field, ...] = ()
    """For an object field: its keys (read with :func:`parse_object` by the code that takes it)."""
    description: str = ""


def _is_kind(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, kind)


def _field_problem(field: Field, value: Any, loc: Loc) -> dict[str, Any] | None:
    if not _is_kind(value, field.kind):
        kind, wanted = _TYPE_NAMES[field.kind]
        return problem(loc, f"Input should be {wanted}", kind)
    if field.kind is int and (out_of_range := int_range_problem(value, loc, field.bounds)):
        return out_of_range
    if field.choices and (message := choice_problem(value, field.choices)):
        return problem(loc, message, "enum")
    if field.check and (message := field.check(value)):
        return problem(loc, f"Value error, {message}", "value_error")
    return None


def choice_problem(value: str, choices: tuple[str, ...]) -> str | None:
    return None if value in choices else f"Input should be {_or_list(choices)}"


def _or_list(choices: tuple[str, ...]) -> str:
    quoted = [f"'{choice}'" for choice in choices]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]


MAX_JSON_DEPTH = 32
"""How deeply arrays and objects may nest in a request body; lazyd's own bodies nest two levels."""
MAX_JSON_NUMBER_CHARS = 64
"""The longest number literal a body may hold: longer ones are attacks on the integer parser, not data."""

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_OPENING = np.frombuffer(b"[{", dtype=np.uint8)


class _JsonLimit(ValueError):
    """Raised from inside the decoder, which then stops at once."""


def parse_json(text: str, loc: Loc = ("body",)) -> Any:
    """Decode a request body, refusing with 422 ``json_invalid`` what is not JSON or is built to hurt:
    nesting deeper than :data:`MAX_JSON_DEPTH`, numbers longer than :data:`MAX_JSON_NUMBER_CHARS`,
    ``NaN``/``Infinity`` (not JSON), and strings holding a lone surrogate (not text, and refused by every
    database driver)."""
    try:
        value = json.loads(text, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant)
    except json.JSONDecodeError as error:
        raise fail((*loc, error.pos), "JSON decode error", "json_invalid") from None
    except _JsonLimit as error:
        raise fail(loc, f"JSON decode error, {error}", "json_invalid") from None
    except RecursionError:  # far deeper than the limit: the decoder gave up before _too_deep could look
        raise _too_deep(loc) from None
    if _nesting_depth(text) > MAX_JSON_DEPTH:
        raise _too_deep(loc)
    if "\\u" in text and _has_lone_surrogate(value):
        raise fail(loc, "JSON decode error, a string holds a lone surrogate (\\ud800-\\udfff)", "json_invalid")
    return value


def _json_int(literal: str) -> int:
    _check_number_length(literal)
    return int(literal)


def _json_float(literal: str) -> float:
    _check_number_length(literal)
    return float(literal)


def _check_number_length(literal: str) -> None:
    if len(literal) > MAX_JSON_NUMBER_CHARS:
        raise _JsonLimit(f"a number is longer than {MAX_JSON_NUMBER_CHARS} characters")


def _json_constant(name: str) -> float:
    raise _JsonLimit(f"{name} is not a JSON value")


def _too_deep(loc: Loc) -> ValidationFailed:
    return fail(loc, f"JSON decode error, arrays and objects nest deeper than {MAX_JSON_DEPTH} levels",
                "json_invalid")


def _nesting_depth(text: str) -> int:
    """How deeply valid JSON ``text`` nests arrays and objects, at C speed on a body of any shape: drop
    the strings and everything but brackets, then take the running count's peak."""
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text)).encode("ascii")
    if not brackets:
        return 0
    steps = np.where(np.isin(np.frombuffer(brackets, dtype=np.uint8), _OPENING), 1, -1)
    return int(np.cumsum(steps).max())


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a decoded value holds a string that is not valid Unicode text (escapes can make one)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_object(data: Any, fields: tuple[Field, ...], loc: Loc = ("body",)) -> dict[str, Any]:
    """The known keys of ``data`` that are present (``None`` counts as absent); every problem at once."""
    if not isinstance(data, dict):
        raise fail(loc, "Input should be a valid dictionary or object to extract fields from", "model_attributes_type")
    errors, values = [], {}
    for field in fields:
        value = data.get(field.name)
        if value is None:
            if field.required:
                errors.append(problem((*loc, field.name), "Field required", "missing"))
            continue
        if found := _field_problem(field, value, (*loc, field.name)):
            errors.append(found)
        else:
            values[field.name] = value
    if errors:
        raise ValidationFailed(errors)
    return values


def int_range_problem(value: int, loc: Loc, bounds: tuple[int, int] = INT64_RANGE) -> dict[str, Any] | None:
    """The one range check of every integer from a client, before it can reach a database column."""
    low, high = bounds
    if not low <= value <= high:
        return problem(loc, f"Input should be between {low} and {high}", "int_range")
    return None


_ASCII_INTEGER = re.compile(r"-?[0-9]{1,%d}" % MAX_JSON_NUMBER_CHARS)


def parse_int(raw: str, loc: Loc, bounds: tuple[int, int] = INT64_RANGE) -> int:
    """An integer written in ASCII digits, nothing else: ``int()`` alone would also take spaces, ``+``,
    ``_`` and the digits of every script (``١``, ``１``)."""
    if not _ASCII_INTEGER.fullmatch(raw):
        raise fail(loc, "Input should be a valid integer, unable to parse string as an integer", "int_parsing")
    value = int(raw)
    if out_of_range := int_range_problem(value, loc, bounds):
        raise ValidationFailed([out_of_range])
    return value
