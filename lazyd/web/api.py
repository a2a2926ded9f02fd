"""The HTTP API described once: each :class:`Endpoint` names its handler, its parameters, its body, what it
answers and which errors it may give.

The router is built from the table (:data:`lazyd.web.routes.ENDPOINTS`); handlers read their inputs only
through it (:func:`param`, :func:`body_fields`), so a parameter the code reads is one the table declares;
``GET /openapi.json`` is generated from the same table (:mod:`lazyd.web.openapi`) and the answers' shapes
are the ``TypedDict`` types the shaping functions return. The document therefore cannot describe an input
the code does not take, or leave out one it does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..options import parse_bool
from ..validation import ID_RANGE, INT64_RANGE, Field, choice_problem, fail, parse_int
from .errors import Handler

QUERY, PATH, HEADER = "query", "path", "header"


@dataclass(frozen=True)
class Param:
    """One query, path or header parameter, and how it is read and checked."""

    name: str
    kind: type = str
    """``str``, ``int`` or ``bool``."""
    where: str = QUERY
    required: bool = False
    default: Any = None
    description: str = ""
    bounds: tuple[int, int] = INT64_RANGE
    """What an integer may hold before its own limits are looked at (:data:`ID_RANGE` for a row id)."""
    ge: int | None = None
    le: int | None = None
    choices: tuple[str, ...] = ()
    example: str | None = None
    """A value that works, shown in the document."""

    def read(self, request: web.Request) -> Any:
        raw = self._raw(request)
        loc = (self.where, self.name)
        if raw is None:
            if self.required:
                raise fail(loc, "Field required", "missing")
            return self.default
        if self.kind is bool:
            return _parse_bool(raw, loc)
        if self.kind is int:
            return _within(parse_int(raw, loc, self.bounds), loc, self.ge, self.le)
        if self.choices and (problem := choice_problem(raw, self.choices)):
            raise fail(loc, problem, "enum")
        return raw

    def _raw(self, request: web.Request) -> str | None:
        if self.where == PATH:
            return request.match_info.get(self.name)
        if self.where == HEADER:
            return request.headers.get(self.name)
        return request.query.get(self.name)


def id_param(name: str, where: str = QUERY, description: str = "") -> Param:
    """A required row id (see :data:`lazyd.validation.ID_RANGE`)."""
    return Param(name, int, where, required=True, bounds=ID_RANGE, description=description)


def _parse_bool(raw: str, loc: tuple[str, str]) -> bool:
    """Spelled as pydantic accepts it (:func:`lazyd.options.parse_bool`)."""
    try:
        return parse_bool(raw)
    except ValueError:
        raise fail(loc, "Input should be a valid boolean, unable to interpret input", "bool_parsing") from None


def _within(value: int, loc: tuple[str, str], ge: int | None, le: int | None) -> int:
    if ge is not None and value < ge:
        raise fail(loc, f"Input should be greater than or equal to {ge}", "greater_than_equal")
    if le is not None and value > le:
        raise fail(loc, f"Input should be less than or equal to {le}", "less_than_equal")
    return value


@dataclass(frozen=True)
class JsonBody:
    """A JSON object with these keys."""

    fields: tuple[Field, ...]


@dataclass(frozen=True)
class FormBody:
    """A ``multipart/form-data`` upload: one file and some text fields (each a :class:`Field`; a ``list``
    one may be sent several times)."""

    file_field: str
    fields: tuple[Field, ...]
    aliases: dict[str, str] = field(default_factory=dict)
    """Other names a text field is also read under (``timestamp_granularities`` for ``...[]``)."""

    @property
    def text_fields(self) -> frozenset[str]:
        return frozenset({*(field.name for field in self.fields), *self.aliases})


@dataclass(frozen=True)
class Reply:
    """A successful answer: ``shape`` is the JSON body's type (a ``TypedDict``, or a tuple of them when it
    may take either); ``media`` lists the other media types it may take instead (their bodies are text or a
    file), or is a function of the application that finds them (the exporters' types)."""

    description: str
    shape: Any = None
    media: tuple[str, ...] | Callable[[web.Application], tuple[str, ...]] = ()
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    replies: dict[int, Reply]
    security: tuple[str, ...] = ()
    """The schemes of :data:`lazyd.web.openapi.SECURITY_SCHEMES` it accepts (any one of them); ``""``
    when it also answers anonymous callers."""
    params: tuple[Param, ...] = ()
    body: JsonBody | FormBody | None = None
    errors: tuple[int, ...] = ()
    """Statuses it may answer besides the ones every route of its kind may (see :func:`error_statuses`)."""

    def param(self, name: str) -> Param:
        for declared in self.params:
            if declared.name == name:
                return declared
        raise LookupError(f"{self.method} {self.path} does not declare the parameter {name!r}")

    def error_statuses(self) -> tuple[int, ...]:
        """Every error status it may answer: the declared ones, 401 where it needs a login, 422 where it
        reads a parameter or body, and the body's own (unreadable 400, too slow 408, too large 413)."""
        statuses = set(self.errors)
        if self.security:
            statuses.add(401)
        if self.params or self.body:
            statuses.add(422)
        if self.body:
            statuses.update({400, 408, 413})
        return tuple(sorted(statuses))

    def route(self) -> web.RouteDef:
        async def handle(request: web.Request) -> web.StreamResponse:
            request[ENDPOINT] = self
            return await self.handler(request)

        if self.method == "GET":  # aiohttp answers HEAD too, as it does for every web.get
            return web.get(self.path, handle)
        return web.route(self.method, self.path, handle)


ENDPOINT = web.RequestKey("endpoint", Endpoint)
"""The endpoint a request was routed to."""


def endpoint_of(request: web.Request) -> Endpoint:
    return request[ENDPOINT]


def param(request: web.Request, name: str) -> Any:
    """The value of the parameter ``name`` that the request's endpoint declares, read and checked."""
    return endpoint_of(request).param(name).read(request)


def body_fields(request: web.Request) -> tuple[Field, ...]:
    body = endpoint_of(request).body
    if not isinstance(body, JsonBody):
        raise LookupError(f"{request.method} {request.path} declares no JSON body")
    return body.fields


def form_of(request: web.Request) -> FormBody:
    body = endpoint_of(request).body
    if not isinstance(body, FormBody):
        raise LookupError(f"{request.method} {request.path} declares no form")
    return body

