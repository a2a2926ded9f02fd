"""Input validation that answers in the seed's 422 shape: ``{"detail": [{"loc", "msg", "type"}, ...]}``.

The messages and ``type`` codes follow pydantic's, which the seed (FastAPI) produced, so existing clients
that show them keep working.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .options import parse_bool

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


_TYPE_NAMES = {str: ("string_type", "a valid string"), bool: ("bool_type", "a valid boolean"),
               int: ("int_type", "a valid integer"), dict: ("dict_type", "a valid dictionary")}


@dataclass(frozen=True)
class Field:
    """One key of a JSON object body."""

    name: str
    kind: type
    required: bool = False
    check: Callable[[Any], str | None] | None = None
    choices: tuple[str, ...] = ()


def _is_kind(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _field_problem(field: Field, value: Any, loc: Loc) -> dict[str, Any] | None:
    if not _is_kind(value, field.kind):
        kind, wanted = _TYPE_NAMES[field.kind]
        return problem(loc, f"Input should be {wanted}", kind)
    if field.choices and value not in field.choices:
        return problem(loc, f"Input should be {_or_list(field.choices)}", "enum")
    if field.check and (message := field.check(value)):
        return problem(loc, f"Value error, {message}", "value_error")
    return None


def _or_list(choices: tuple[str, ...]) -> str:
    quoted = [f"'{choice}'" for choice in choices]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else quoted[0]


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


INT64_MAX = 2**63 - 1
"""The largest integer every supported database column holds."""


def parse_int(raw: str, loc: Loc) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise fail(loc, "Input should be a valid integer, unable to parse string as an integer",
                   "int_parsing") from None
    if abs(value) > INT64_MAX:
        raise fail(loc, f"Input should be between {-INT64_MAX} and {INT64_MAX}", "int_range")
    return value


def query_int(
    query: Mapping[str, str], name: str, default: int | None = None, *, ge: int | None = None, le: int | None = None
) -> int:
    """An integer query parameter; missing is an error only when there is no default."""
    raw = query.get(name)
    if raw is None:
        if default is None:
            raise fail(("query", name), "Field required", "missing")
        return default
    value = parse_int(raw, ("query", name))
    if ge is not None and value < ge:
        raise fail(("query", name), f"Input should be greater than or equal to {ge}", "greater_than_equal")
    if le is not None and value > le:
        raise fail(("query", name), f"Input should be less than or equal to {le}", "less_than_equal")
    return value


def query_bool(query: Mapping[str, str], name: str, default: bool = False) -> bool:
    """A boolean query parameter, spelled as pydantic accepts it (:func:`lazyd.options.parse_bool`)."""
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return parse_bool(raw)
    except ValueError:
        raise fail(("query", name), "Input should be a valid boolean, unable to interpret input",
                   "bool_parsing") from None


def query_choice(query: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """A query parameter restricted to ``choices``; the first choice is the default."""
    value = query.get(name, choices[0])
    if value not in choices:
        raise fail(("query", name), f"Input should be {_or_list(choices)}", "enum")
    return value
