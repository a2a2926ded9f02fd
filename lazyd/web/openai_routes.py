"""OpenAI's audio API on lazyd's durable queue: ``/v1/audio/transcriptions``, ``/v1/audio/translations``
and ``/v1/models``, for the clients that speak it (the ``openai`` libraries, Open WebUI, subtitle tools).

A request is an ordinary lazyd job: it is listed under ``/transcriptions``, resumes after a crash, and is
finished when the client has gone away. The response waits for it (or, with ``Prefer: respond-async``,
answers 202 with the job at once); ``X-Lazyd-Transcription-Id`` names the job on every answer. Errors on
these routes take OpenAI's shape (:func:`lazyd.web.errors.openai_error_response`).
"""

from __future__ import annotations

import asyncio
import json
import zlib
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from aiohttp import web

from ..exporters import ExportOptions, Transcript
from ..jobs.events import Event
from ..jobs.transcripts import load_transcript
from ..languages import language_name
from ..options import option_specs, overrides_from
from ..store import Transcription
from ..validation import Field, fail
from .api import FormBody, param
from .errors import ApiError
from .keys import DAEMON, REGISTRY
from .security import current_user
from .uploads import form_values, submit_upload

JOB_HEADER = "X-Lazyd-Transcription-Id"
OPENAI_MODEL = "whisper-1"
"""The model name OpenAI's clients send by default: here, this node's model."""
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
OWNER = "lazyd"


class ModelJson(TypedDict):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(TypedDict):
    object: Literal["list"]
    data: list[ModelJson]


class TextJson(TypedDict):
    text: str


class OpenAISegment(TypedDict):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class OpenAIWord(TypedDict):
    word: str
    start: float
    end: float


class VerboseJson(TypedDict):
    task: Literal["transcribe", "translate"]
    language: str
    duration: float
    text: str
    segments: NotRequired[list[OpenAISegment]]
    words: NotRequired[list[OpenAIWord]]


class QueuedJob(TypedDict):
    """``Prefer: respond-async``'s answer."""

    id: int
    object: Literal["lazyd.transcription"]
    status: str


@dataclass(frozen=True)
class AudioRequest:
    """What an ``/v1/audio/*`` form asks for besides the job options."""

    task: str
    response_format: str = "json"
    granularities: tuple[str, ...] = ("segment",)
    stream: bool = False


OPTIONS = {spec.name: spec for spec in option_specs()}
FIELDS = (
    Field("model", str), Field("language", str, check=OPTIONS["language"].problem),
    Field("prompt", str, check=OPTIONS["initial_prompt"].problem),
    Field("temperature", float, check=lambda value: None if 0 <= value <= 1 else "temperature must be between 0 and 1"),
    Field("response_format", str, choices=RESPONSE_FORMATS), Field("stream", bool),
)
GRANULARITY_FIELD = "timestamp_granularities[]"
TRANSCRIPTION_FORM = FormBody("file", (*FIELDS, Field(GRANULARITY_FIELD, list, choices=GRANULARITIES)),
                              aliases={"timestamp_granularities": GRANULARITY_FIELD})
TRANSLATION_FORM = FormBody("file", tuple(field for field in FIELDS if field.name != "language"))


# -- models -----------------------------------------------------------------------------------------------

async def model_names(app: web.Application) -> tuple[str, ...]:
    return OPENAI_MODEL, await app[DAEMON].served_model()


def model_json(name: str, created: int) -> ModelJson:
    return {"id": name, "object": "model", "created": created, "owned_by": OWNER}


async def list_models(request: web.Request) -> web.Response:
    await current_user(request, api_key=True)
    created = request.app[DAEMON].started_at
    return web.json_response({"object": "list", "data": [model_json(name, created)
                                                          for name in await model_names(request.app)]})


async def get_model(request: web.Request) -> web.Response:
    await current_user(request, api_key=True)
    name = param(request, "id")
    if name not in await model_names(request.app):
        raise ApiError(404, f"The model {name!r} does not exist on this node")
    return web.json_response(model_json(name, request.app[DAEMON].started_at))


# -- transcribing -----------------------------------------------------------------------------------------

async def transcriptions(request: web.Request) -> web.StreamResponse:
    return await _audio(request, "transcribe")


async def translations(request: web.Request) -> web.StreamResponse:
    """Into English; only a multilingual model translates (``.en`` models are English-only)."""
    return await _audio(request, "translate")


async def _audio(request: web.Request, task: str) -> web.StreamResponse:
    user = await current_user(request, can_interact=True, api_key=True)
    models = await model_names(request.app)
    submitted = await submit_upload(request, user, lambda fields: _parse_form(models, fields, task))
    job, asked = submitted.job, submitted.extra
    if _prefers_async(request):
        return web.json_response(_job_json(job), status=202, headers={
            JOB_HEADER: str(job.id), "Location": f"/transcript/info?transcript_id={job.id}"})
    if asked.stream:
        return await _stream(request, job)
    return await _respond(request, await _finished(request, job), asked)


def _parse_form(models: tuple[str, ...], fields: dict[str, list[str]], task: str) -> tuple[Any, AudioRequest]:
    """The job options and the answer asked for; ``models`` are the names this node serves (its own last)."""
    values = form_values(fields, FIELDS)
    granularities = tuple(fields.get(GRANULARITY_FIELD, []) + fields.get("timestamp_granularities", []))
    if unknown := [name for name in granularities if name not in GRANULARITIES]:
        raise fail(("body", GRANULARITY_FIELD), f"Input should be 'segment' or 'word', not {unknown[0]!r}", "enum")
    if (model := values.get("model")) is not None and model not in models:
        raise fail(("body", "model"), f"Value error, the model {model!r} does not exist on this node; "
                                      f"GET /v1/models lists them", "model_not_found")
    if task == "translate" and (model := models[-1]).endswith(".en"):
        raise fail(("body", "model"), f"Value error, this node's model {model} is English-only and cannot translate; "
                   "configure a multilingual model (such as small or large-v3) to serve /v1/audio/translations",
                   "translation_unsupported")
    asked = AudioRequest(task, values.get("response_format", "json"), granularities or ("segment",),
                         values.get("stream", False))
    if asked.stream and asked.response_format not in ("json", "text"):
        raise fail(("body", "stream"), "Value error, streaming answers in json or text only", "value_error")
    options = {"language": values.get("language"), "initial_prompt": values.get("prompt"), "task": task}
    if "word" in asked.granularities and asked.response_format == "verbose_json":
        options["word_timestamps"] = True
    return overrides_from(options), asked


def _prefers_async(request: web.Request) -> bool:
    """RFC 7240's ``Prefer: respond-async``: a lazyd extension, answered 202 with the job."""
    preferences = (param(request, "Prefer") or "").lower()
    return "respond-async" in (item.strip() for item in preferences.split(","))


def _job_json(job: Transcription) -> QueuedJob:
    return {"id": job.id, "object": "lazyd.transcription", "status": job.current_state}


async def _finished(request: web.Request, job: Transcription) -> Transcript:
    """The job's transcript once it is completed; an OpenAI-shaped error otherwise (the job stays)."""
    daemon = request.app[DAEMON]
    final = await daemon.wait(job.id)
    if final is None or final.current_state != "completed":
        state = final.current_state if final else "deleted"
        raise ApiError(500, f"Transcription {job.id} ended {state}; its state and any finished text are at "
                            f"/transcript/info?transcript_id={job.id}", {JOB_HEADER: str(job.id)})
    return await load_transcript(daemon.store, final)


async def _respond(request: web.Request, transcript: Transcript, asked: AudioRequest) -> web.Response:
    headers = {JOB_HEADER: str(transcript.id)}
    text = transcript_text(transcript)
    if asked.response_format == "text":
        return web.Response(text=text, content_type="text/plain", headers=headers)
    if asked.response_format in ("srt", "vtt"):
        exporter = request.app[REGISTRY].exporters.get(asked.response_format)
        body = await asyncio.to_thread(exporter.render, transcript, ExportOptions())
        return web.Response(body=body, content_type=exporter.media_type.split(";")[0], charset="utf-8",
                            headers=headers)
    if asked.response_format == "verbose_json":
        return web.json_response(verbose_json(transcript, asked), headers=headers)
    return web.json_response({"text": text}, headers=headers)


def transcript_text(transcript: Transcript) -> str:
    """The whole text, as lazyd's chunks hold it, joined by spaces."""
    return " ".join(chunk.text.strip() for chunk in transcript.chunks if chunk.text.strip())


def verbose_json(transcript: Transcript, asked: AudioRequest) -> VerboseJson:
    """OpenAI's ``verbose_json``. lazyd keeps no tokens or per-window seek: ``tokens`` is empty, ``seek`` the
    segment's start in 10 ms frames, ``temperature`` 0 and ``compression_ratio`` computed from the text as
    Whisper does."""
    answer: VerboseJson = {"task": asked.task, "language": language_name(transcript.language),
                           "duration": transcript.duration_secs, "text": transcript_text(transcript)}
    segments = list(transcript.segments)
    if "segment" in asked.granularities:
        answer["segments"] = [_segment_json(number, segment) for number, segment in enumerate(segments)]
    if "word" in asked.granularities:
        answer["words"] = [{"word": word.word, "start": word.start, "end": word.end}
                           for segment in segments for word in segment.words or ()]
    return answer


def _segment_json(number: int, segment: Any) -> OpenAISegment:
    return {"id": number, "seek": round(segment.start * 100), "start": segment.start, "end": segment.end,
            "text": segment.text, "tokens": [], "temperature": 0.0,
            "avg_logprob": segment.avg_logprob if segment.avg_logprob is not None else 0.0,
            "compression_ratio": compression_ratio(segment.text),
            "no_speech_prob": segment.no_speech_prob if segment.no_speech_prob is not None else 0.0}


def compression_ratio(text: str) -> float:
    """Whisper's repetition measure: the text's length over its zlib-compressed length."""
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 3) if data else 0.0


# -- streaming --------------------------------------------------------------------------------------------

class Deltas:
    """The text a job adds, segment by segment, once each: a chunk decoded again after a failed attempt
    publishes its segments again, and they are not sent twice."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.last: tuple[int, float] = (-1, -1.0)
        self.sent_any = False

    def of(self, event: Event) -> str:
        data = event.data
        if event.type != "segment" or data.get("transcription_id") != self.job_id or not data["text"].strip():
            return ""
        position = (data["chunk_order"], data["start"])
        if position <= self.last:
            return ""
        self.last = position
        delta = (" " if self.sent_any else "") + data["text"].strip()
        self.sent_any = True
        return delta


async def _stream(request: web.Request, job: Transcription) -> web.StreamResponse:
    """Server-sent events as OpenAI's streaming transcription sends them: ``transcript.text.delta`` as
    segments arrive, then ``transcript.text.done`` with the whole text (or ``error``)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           JOB_HEADER: str(job.id)})
    await response.prepare(request)
    daemon, deltas = request.app[DAEMON], Deltas(job.id)
    events: asyncio.Queue[Event | None] = asyncio.Queue()
    waiting = asyncio.create_task(daemon.wait(job.id, events.put_nowait))
    waiting.add_done_callback(lambda _: events.put_nowait(None))
    try:
        while (event := await events.get()) is not None:
            if delta := deltas.of(event):
                await _send(response, {"type": "transcript.text.delta", "delta": delta})
        await _send(response, await _stream_end(request, job, waiting.result()))
        await response.write_eof()
    finally:
        waiting.cancel()  # the client went away: stop waiting; the job goes on
    return response


async def _stream_end(request: web.Request, job: Transcription, final: Transcription | None) -> dict[str, Any]:
    if final is None or final.current_state != "completed":
        state = final.current_state if final else "deleted"
        return {"type": "error", "error": {"message": f"Transcription {job.id} ended {state}",
                                           "type": "server_error", "param": None, "code": None}}
    transcript = await load_transcript(request.app[DAEMON].store, final)
    return {"type": "transcript.text.done", "text": transcript_text(transcript)}


async def _send(response: web.StreamResponse, event: dict[str, Any]) -> None:
    await response.write(f"data: {json.dumps(event)}\n\n".encode())
