"""The OpenAPI 3.1 document, generated from the route table (:mod:`lazyd.web.api`): parameters and bodies
from the declarations the handlers read through, answers from the ``TypedDict`` types the shaping
functions return, errors in the shape the error middleware gives each route."""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
from typing import Any, Literal, NotRequired, Union, get_args, get_origin, get_type_hints, is_typeddict

from aiohttp import web

from .. import __version__
from ..validation import INT64_RANGE, Field
from .api import Endpoint, FormBody, JsonBody, Param, Reply
from .errors import OPENAI_PREFIX, ErrorJson, OpenAIErrorJson, ValidationErrorJson
from .keys import ENDPOINTS

Schema = dict[str, Any]

SECURITY_SCHEMES: dict[str, Schema] = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "The access token from `POST /auth/login`"},
    "apiKey": {"type": "http", "scheme": "bearer", "bearerFormat": "lzd_<prefix>_<secret>",
               "description": "An API key from `POST /auth/keys`, sent as the bearer"},
    "adminToken": {"type": "apiKey", "in": "header", "name": "X-Admin-Token",
                   "description": "The server's admin token (`[auth] admin_token`)"},
    "adminTokenQuery": {"type": "apiKey", "in": "query", "name": "secret_admin_token",
                        "description": "The server's admin token, as the seed API took it"},
    "workerToken": {"type": "apiKey", "in": "header", "name": "X-Worker-Token",
                    "description": "The external workers' token (`[auth] worker_token`)"},
    "workerTokenQuery": {"type": "apiKey", "in": "query", "name": "secret_worker_token",
                         "description": "The external workers' token, as the seed API took it"},
    "metricsToken": {"type": "http", "scheme": "bearer",
                     "description": "`[auth] metrics_token`, for scraping `/metrics` from another machine"},
    "tokenQuery": {"type": "apiKey", "in": "query", "name": "token",
                   "description": "The access token in the query, for what a browser cannot send a header with "
                                  "(a WebSocket, an <audio> element); never an API key"},
}
ERROR_MEANINGS = {
    400: "The body cannot be read (not UTF-8, not multipart) or, under /v1, a field is wrong",
    401: "No valid token or key", 403: "Not allowed", 404: "Not found, or not the caller's",
    408: "The body stalled", 409: "Not in a state that allows it", 413: "The body is too large",
    415: "Not audio that can be decoded", 416: "The range asked for is not in the file",
    422: "A parameter or field is wrong: each problem is listed",
    500: "The transcription failed; the job and any finished text stay",
}
BODILESS_ERRORS = frozenset({416})
"""Answered by aiohttp's file response itself, with a ``Content-Range`` header and no body."""
_PRIMITIVES = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}


def build_document(app: web.Application) -> Schema:
    """The document for ``app``'s route table (:data:`lazyd.web.keys.ENDPOINTS`) and its exporters."""
    components = Components()
    paths: dict[str, dict[str, Schema]] = {}
    for endpoint in app[ENDPOINTS]:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(app, endpoint, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "lazyd", "version": __version__,
                 "description": "A self-hosted transcription daemon for lecture recordings."},
        "paths": paths,
        "components": {"schemas": components.schemas, "securitySchemes": SECURITY_SCHEMES},
    }


class Components:
    """The named schemas: one per ``TypedDict`` (or dataclass sent as ``asdict``), referred to by ``$ref``."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}

    def schema(self, kind: Any) -> Schema:
        """The JSON Schema of a Python type as the JSON encoder writes it."""
        if kind is Any:
            return {}
        if kind in _PRIMITIVES:
            return {"type": _PRIMITIVES[kind]}
        if is_typeddict(kind) or dataclasses.is_dataclass(kind):
            return self._named(kind)
        origin, args = get_origin(kind), get_args(kind)
        if origin is Literal:
            return {"enum": list(args)}
        if origin in (Union, types.UnionType):
            return {"anyOf": [self.schema(arg) for arg in args]}
        if origin in (list, tuple):
            return {"type": "array", "items": self.schema(args[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.schema(args[1])}
        raise TypeError(f"no JSON Schema for {kind!r}")

    def _named(self, shape: Any) -> Schema:
        name = shape.__name__
        if name not in self.schemas:
            self.schemas[name] = {}  # a shape that contains itself refers to the name
            hints = get_type_hints(shape, include_extras=True)
            optional = {key for key, kind in hints.items() if get_origin(kind) is NotRequired}
            described: Schema = {"type": "object",
                                 "properties": {key: self.schema(_required_part(kind)) for key, kind in hints.items()},
                                 "required": [key for key in hints if key not in optional],
                                 "additionalProperties": False}
            if shape.__doc__ and not shape.__doc__.startswith(f"{name}("):
                described["description"] = inspect.cleandoc(shape.__doc__)
            self.schemas[name] = described
        return {"$ref": f"#/components/schemas/{name}"}


def _required_part(kind: Any) -> Any:
    """``X`` of ``NotRequired[X]``. (A module with postponed annotations hides ``NotRequired`` from
    ``TypedDict.__required_keys__`` on Python 3.11, so the keys are told apart here.)"""
    return get_args(kind)[0] if get_origin(kind) is NotRequired else kind


def _operation(app: web.Application, endpoint: Endpoint, components: Components) -> Schema:
    operation: Schema = {
        "operationId": _operation_id(endpoint), "summary": endpoint.summary, "tags": [endpoint.tag],
        "responses": {**{str(status): _answer(app, reply, components) for status, reply in endpoint.replies.items()},
                      **_errors(endpoint, components)},
    }
    if description := inspect.getdoc(endpoint.handler):
        operation["description"] = description
    if endpoint.params:
        operation["parameters"] = [_parameter(declared) for declared in endpoint.params]
    if endpoint.body:
        operation["requestBody"] = _request_body(endpoint.body)
    if endpoint.security:
        operation["security"] = [{name: []} if name else {} for name in endpoint.security]
    return operation


def _operation_id(endpoint: Endpoint) -> str:
    """``GET /transcript/info`` -> ``get_transcript_info``; a folder's index (``/app/``) ends in ``_index``."""
    words = re.findall(r"[a-z0-9]+", endpoint.path.lower())
    if words and endpoint.path.endswith("/"):
        words.append("index")
    return "_".join([endpoint.method.lower(), *words]) if words else f"{endpoint.method.lower()}_root"


def _parameter(declared: Param) -> Schema:
    schema: Schema = {"type": _PRIMITIVES[declared.kind]}
    if declared.kind is int:
        low, high = declared.bounds
        schema.update(minimum=low if declared.ge is None else max(low, declared.ge),
                      maximum=high if declared.le is None else min(high, declared.le))
    if declared.choices:
        schema["enum"] = list(declared.choices)
    if declared.default is not None:
        schema["default"] = declared.default
    described: Schema = {"name": declared.name, "in": declared.where, "required": declared.required,
                         "schema": schema}
    if declared.description:
        described["description"] = declared.description
    if declared.example is not None:
        described["example"] = declared.example
    return described


def _field_schema(field: Field) -> Schema:
    """A body field; a check made in code (a password's rule, a language code) is not expressed."""
    if field.kind is dict:
        return _object_schema(field.fields) if field.fields else {"type": "object"}
    if field.kind is list:
        return {"type": "array", "items": {"type": "string", "enum": list(field.choices)}}
    schema: Schema = {"type": _PRIMITIVES[field.kind]}
    if field.choices:
        schema["enum"] = list(field.choices)
    if field.kind is int and field.bounds != INT64_RANGE:
        schema.update(minimum=field.bounds[0], maximum=field.bounds[1])
    if field.description:
        schema["description"] = field.description
    return schema


def _object_schema(fields: tuple[Field, ...]) -> Schema:
    """Unknown keys are ignored by the code, so they are allowed here."""
    return {"type": "object", "properties": {field.name: _field_schema(field) for field in fields},
            "required": [field.name for field in fields if field.required]}


def _request_body(body: JsonBody | FormBody) -> Schema:
    if isinstance(body, JsonBody):
        return {"required": True, "content": {"application/json": {"schema": _object_schema(body.fields)}}}
    form = _object_schema(body.fields)
    form["properties"] = {body.file_field: {"type": "string", "format": "binary",
                                            "description": "The recording: any format ffmpeg decodes"},
                          **form["properties"]}
    form["required"] = [body.file_field, *form["required"]]
    return {"required": True, "content": {"multipart/form-data": {"schema": form}}}


def _answer(app: web.Application, reply: Reply, components: Components) -> Schema:
    answer: Schema = {"description": reply.description}
    content: dict[str, Schema] = {}
    if reply.shape is not None:
        shapes = reply.shape if isinstance(reply.shape, tuple) else (reply.shape,)
        schemas = [components.schema(shape) for shape in shapes]
        content["application/json"] = {"schema": schemas[0] if len(schemas) == 1 else {"anyOf": schemas}}
    media = reply.media(app) if callable(reply.media) else reply.media
    for media_type in media:
        content.setdefault(media_type, {"schema": {} if media_type == "application/json" else {"type": "string"}})
    if content:
        answer["content"] = content
    if reply.headers:
        answer["headers"] = {name: {"schema": {"type": "string"}} for name in reply.headers}
    return answer


def _errors(endpoint: Endpoint, components: Components) -> dict[str, Schema]:
    """Under /v1 every error has OpenAI's shape and a field's problem is a 400; elsewhere the seed's."""
    openai = endpoint.path.startswith(OPENAI_PREFIX)
    answers = {}
    for status in endpoint.error_statuses():
        if openai:
            status, shape = (400 if status == 422 else status), OpenAIErrorJson
        else:
            shape = ValidationErrorJson if status == 422 else ErrorJson
        answers[str(status)] = {"description": ERROR_MEANINGS[status]}
        if status not in BODILESS_ERRORS:
            answers[str(status)]["content"] = {"application/json": {"schema": components.schema(shape)}}
    return answers
