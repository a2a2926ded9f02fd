"""Every route of the daemon, in one table: the router, the handlers' inputs and ``GET /openapi.json`` all
come from it (:mod:`lazyd.web.api`)."""

from __future__ import annotations

from aiohttp import web

from .. import users
from ..jobs.transcripts import TranscriptionJson
from . import (app_routes, auth_routes, docs_routes, export_routes, key_routes, openai_routes, search_routes,
               system_routes, transcription_routes, user_routes, worker_routes, ws)
from .api import HEADER, PATH, Endpoint, JsonBody, Param, Reply, id_param
from .body import PAGE, SEED_SIZE, SIZE
from .keys import REGISTRY
from .shapes import (Alive, ChunkPage, FormatList, HealthJson, KeyList, NewKeyJson, PublicHealthJson, RegistrationJson,
                     SearchPage, SegmentEditJson, SegmentPage, TokenPair, TranscriptionPage, Uploaded, UserJson,
                     UserPage, WorkerReportAnswer)

USER = ("bearer",)
"""A login's access token."""
USER_OR_KEY = ("bearer", "apiKey")
"""A login's access token or one of the user's API keys."""
ADMIN_TOKEN_OR_ADMIN = ("adminToken", "adminTokenQuery", "bearer")
WORKER = ("workerToken", "workerTokenQuery")

TASK_ID = id_param("task_id", description="The transcription's id")
TRANSCRIPT_ID = id_param("transcript_id", description="The transcription's id")
DELETED = {204: Reply("Done; nothing to answer")}
AUDIO_MEDIA = ("audio/*", "video/*", "application/octet-stream")
"""What a stored recording is served as: its type from its name (any format ffmpeg reads was accepted)."""
OPENAI_ANSWERS = {
    200: Reply("The transcript, once the job is completed: JSON for `json` and `verbose_json`, text for `text`, "
               "`srt` and `vtt`; server-sent events when `stream` is true",
               (openai_routes.TextJson, openai_routes.VerboseJson),
               media=("text/plain", "application/x-subrip", "text/vtt", "text/event-stream"),
               headers=(openai_routes.JOB_HEADER,)),
    202: Reply("With `Prefer: respond-async`: the job, queued; follow it at `Location` or over `GET /ws`",
               openai_routes.QueuedJob, headers=(openai_routes.JOB_HEADER, "Location")),
}
OPENAI_AUDIO_PARAMS = (Param("Prefer", where=HEADER, description="`respond-async`: answer 202 with the job at once "
                                                                  "instead of waiting for the transcript (a lazyd "
                                                                  "extension)"),)


def export_media(app: web.Application) -> tuple[str, ...]:
    """What an export may be: one media type per registered exporter."""
    exporters = app[REGISTRY].exporters
    return tuple(dict.fromkeys(exporter.media_type.split(";")[0] for name in exporters.names()
                               if (exporter := exporters.get(name))))


def _export(method: str) -> Endpoint:
    return Endpoint(method, "/transcript/export", export_routes.export, "Download the transcript in a format",
                    "transcriptions", {200: Reply("The transcript as an attachment", media=export_media)},
                    USER_OR_KEY, (TASK_ID, *export_routes.EXPORT_PARAMS), errors=(404, 409))


ENDPOINTS = (
    # -- the daemon
    Endpoint("GET", "/", system_routes.health, "Whether the API and the database answer", "system",
             {200: Reply("Alive", Alive)}),
    Endpoint("GET", "/health", system_routes.details, "Whether it works, and for an admin what runs where",
             "system", {200: Reply("The daemon's state: the public view, or an admin's", (PublicHealthJson, HealthJson))},
             ("", *ADMIN_TOKEN_OR_ADMIN), errors=(403,)),
    Endpoint("GET", "/metrics", system_routes.metrics, "Prometheus metrics", "system",
             {200: Reply("Prometheus' text format", media=("text/plain",))}, ("", "metricsToken"), errors=(403,)),
    Endpoint("GET", "/openapi.json", docs_routes.openapi, "This document", "system",
             {200: Reply("The OpenAPI 3.1 document", media=("application/json",))}),
    Endpoint("GET", "/docs", docs_routes.reader, "A reader for this document", "system",
             {200: Reply("A page that shows the document", media=("text/html",))}),
    Endpoint("GET", "/docs/{asset}", docs_routes.asset, "The reader's scripts and styles", "system",
             {200: Reply("The file", media=docs_routes.ASSET_MEDIA)},
             params=(Param("asset", where=PATH, required=True, choices=docs_routes.ASSETS),)),
    # -- the web page
    Endpoint("GET", "/app", app_routes.to_page, "Where the web page is", "web page",
             {308: Reply("The page is at `/app/`", headers=("Location",))}),
    Endpoint("GET", "/app/", app_routes.page, "The web page: transcribe, read, search, manage users", "web page",
             {200: Reply("The page, which loads its modules from `/app/{asset}`", media=("text/html",))}),
    Endpoint("GET", "/app/{asset}", app_routes.asset, "The page's modules and styles", "web page",
             {200: Reply("The file", media=app_routes.ASSET_MEDIA)},
             params=(Param("asset", where=PATH, required=True, choices=app_routes.ASSETS),)),
    # -- accounts
    Endpoint("GET", "/auth/register", auth_routes.registration, "Whether registration is open", "accounts",
             {200: Reply("Open or not", RegistrationJson)}),
    Endpoint("POST", "/auth/register", auth_routes.register, "Create an account (when registration is open)",
             "accounts", {201: Reply("The new account", UserJson)}, body=JsonBody(auth_routes.CREDENTIALS),
             errors=(403, 409)),
    Endpoint("POST", "/auth/login", auth_routes.login, "Log in: a pair of tokens", "accounts",
             {200: Reply("The access and refresh tokens", TokenPair)}, body=JsonBody(auth_routes.CREDENTIALS),
             errors=(401,)),
    Endpoint("POST", "/auth/refresh", auth_routes.refresh, "A new pair of tokens for a refresh token", "accounts",
             {200: Reply("The access and refresh tokens", TokenPair)}, body=JsonBody(auth_routes.REFRESH_TOKEN),
             errors=(401,)),
    Endpoint("GET", "/auth/info", auth_routes.info, "The caller's account", "accounts",
             {200: Reply("The account", UserJson)}, USER_OR_KEY),
    Endpoint("DELETE", "/auth/info", auth_routes.delete_self, "Delete the caller's account", "accounts",
             DELETED, USER, errors=(409,)),
    Endpoint("PATCH", "/auth/patch", user_routes.seed_patch, "Change a user's password or upload right", "accounts",
             {200: Reply("The changed account", UserJson)}, ADMIN_TOKEN_OR_ADMIN,
             (id_param("user_id", description="The user's id"),), JsonBody(user_routes.SEED_CHANGES),
             errors=(403, 404, 409)),
    Endpoint("GET", "/users", user_routes.list_users, "The accounts (admins only)", "accounts",
             {200: Reply("A page of accounts", UserPage)}, USER,
             (PAGE, SIZE, Param("sort", choices=users.SORT_KEYS, default=users.SORT_KEYS[0]),
              Param("order", choices=users.ORDERS, default=users.ORDERS[0])), errors=(403,)),
    Endpoint("PATCH", "/users/{id}", user_routes.patch_user, "Change an account (admins only)", "accounts",
             {200: Reply("The changed account", UserJson)}, USER, (id_param("id", PATH),),
             JsonBody(user_routes.ADMIN_CHANGES), errors=(403, 404, 409)),
    # -- API keys
    Endpoint("POST", "/auth/keys", key_routes.create, "Create an API key", "api keys",
             {201: Reply("The key, whole: it is not shown again", NewKeyJson)}, USER, body=JsonBody(key_routes.NEW_KEY)),
    Endpoint("GET", "/auth/keys", key_routes.list_keys, "The caller's API keys", "api keys",
             {200: Reply("The keys, without their secrets", KeyList)}, USER),
    Endpoint("DELETE", "/auth/keys/{id}", key_routes.revoke, "Revoke an API key", "api keys", DELETED, USER,
             (id_param("id", PATH),), errors=(404,)),
    # -- transcriptions
    Endpoint("POST", "/upload-audiofile", transcription_routes.upload, "Upload a recording to transcribe",
             "transcriptions", {200: Reply("The queued transcription", Uploaded)}, USER_OR_KEY,
             body=transcription_routes.UPLOAD_FORM, errors=(403, 409, 415)),
    Endpoint("GET", "/transcriptions", transcription_routes.list_transcriptions, "The caller's transcriptions",
             "transcriptions", {200: Reply("A page of transcriptions, newest first", TranscriptionPage)},
             USER_OR_KEY, (PAGE, SEED_SIZE)),
    Endpoint("GET", "/transcript", transcription_routes.transcript, "A transcription's finished chunks",
             "transcriptions", {200: Reply("A page of chunks, in order", ChunkPage)}, USER_OR_KEY,
             (TASK_ID, PAGE, SEED_SIZE), errors=(404,)),
    Endpoint("GET", "/transcript/audio", transcription_routes.audio, "The recording, for a player", "transcriptions",
             {200: Reply("The whole recording", media=AUDIO_MEDIA),
              206: Reply("The part a Range asked for", media=AUDIO_MEDIA)},
             (*USER_OR_KEY, "tokenQuery"),
             (TASK_ID, Param("Range", where=HEADER,
                             description="Bytes wanted, e.g. `bytes=0-1023` (read by aiohttp's file response)")),
             errors=(404, 416)),
    Endpoint("DELETE", "/transcript", transcription_routes.delete, "Delete a transcription", "transcriptions",
             DELETED, USER_OR_KEY, (TRANSCRIPT_ID,), errors=(404, 409)),
    Endpoint("GET", "/transcript/info", transcription_routes.info, "One transcription", "transcriptions",
             {200: Reply("The transcription", TranscriptionJson)}, USER_OR_KEY, (TRANSCRIPT_ID,), errors=(404,)),
    Endpoint("GET", "/transcript/segments", transcription_routes.segments, "A transcription's timed segments",
             "transcriptions", {200: Reply("A page of segments, in order", SegmentPage)}, USER_OR_KEY,
             (TRANSCRIPT_ID, PAGE, SIZE), errors=(404,)),
    Endpoint("PATCH", "/transcript/segments/{chunk_order}/{segment_no}", transcription_routes.correct_segment,
             "Correct or label a segment", "transcriptions", {200: Reply("The segment as it now is", SegmentEditJson)},
             USER_OR_KEY, (TRANSCRIPT_ID, *transcription_routes.SEGMENT_PARAMS),
             JsonBody(transcription_routes.SEGMENT_CHANGE), errors=(404,)),
    Endpoint("POST", "/transcript/cancel", transcription_routes.cancel, "Cancel a transcription", "transcriptions",
             {200: Reply("Cancelled", media=("text/plain",))}, USER_OR_KEY, (TRANSCRIPT_ID,), errors=(404, 409)),
    Endpoint("POST", "/transcript/retry", transcription_routes.retry, "Queue a failed or cancelled one again",
             "transcriptions", {200: Reply("The transcription, queued", TranscriptionJson)}, USER_OR_KEY,
             (TRANSCRIPT_ID,), errors=(404, 409)),
    _export("POST"),
    _export("GET"),
    Endpoint("GET", "/search", search_routes.search_transcripts, "Search the caller's transcripts", "transcriptions",
             {200: Reply("A page of hits, best first", SearchPage)}, USER_OR_KEY, (search_routes.QUERY, PAGE, SIZE)),
    Endpoint("GET", "/formats", export_routes.formats, "The export formats", "transcriptions",
             {200: Reply("Every registered exporter", FormatList)}),
    Endpoint("GET", "/ws", ws.events, "Live events over a WebSocket", "transcriptions",
             {101: Reply("Switching to the WebSocket protocol")}, ("bearer", "tokenQuery"),
             (Param("stream", default="", description="The stream of the last event seen, to catch up"),
              Param("since", int, ge=0, description="The sequence number of the last event seen, to catch up")),
             errors=(400, 403)),
    # -- external workers
    Endpoint("POST", "/worker/transcription_status", worker_routes.transcription_status,
             "An external worker reports a state or a chunk", "workers",
             {200: Reply("The transcription after the report", WorkerReportAnswer)}, WORKER,
             body=JsonBody(worker_routes.REPORT), errors=(403, 404, 409)),
    # -- OpenAI's audio API
    Endpoint("POST", "/v1/audio/transcriptions", openai_routes.transcriptions, "Transcribe (OpenAI's API)", "openai",
             OPENAI_ANSWERS, USER_OR_KEY, OPENAI_AUDIO_PARAMS, openai_routes.TRANSCRIPTION_FORM,
             errors=(403, 409, 415, 500)),
    Endpoint("POST", "/v1/audio/translations", openai_routes.translations, "Translate into English (OpenAI's API)",
             "openai", OPENAI_ANSWERS, USER_OR_KEY, OPENAI_AUDIO_PARAMS, openai_routes.TRANSLATION_FORM,
             errors=(403, 409, 415, 500)),
    Endpoint("GET", "/v1/models", openai_routes.list_models, "The models this node serves", "openai",
             {200: Reply("The models", openai_routes.ModelList)}, USER_OR_KEY),
    Endpoint("GET", "/v1/models/{id}", openai_routes.get_model, "One model", "openai",
             {200: Reply("The model", openai_routes.ModelJson)}, USER_OR_KEY,
             (Param("id", where=PATH, required=True, example=openai_routes.OPENAI_MODEL),), errors=(404,)),
)
