"""JSON: everything lazyd knows about a transcription, for scripts."""

from __future__ import annotations

import json
from typing import Any

from .. import hookimpl
from ..exporters import ExportOptions, Exporter, Transcript


class JsonExporter(Exporter):
    name = "json"
    media_type = "application/json"
    suffix = "json"
    description = "JSON: metadata, chunks, segments and words"

    def render(self, transcript: Transcript, options: ExportOptions) -> bytes:
        return json.dumps(transcript_data(transcript), ensure_ascii=False, indent=2).encode("utf-8")


def transcript_data(transcript: Transcript) -> dict[str, Any]:
    return {
        "id": transcript.id,
        "title": transcript.title,
        "duration_secs": transcript.duration_secs,
        "created": transcript.created.isoformat(),
        "state": transcript.state,
        "model": transcript.model,
        "language": transcript.language,
        "language_probability": transcript.language_probability,
        "text": "\n\n".join(chunk.text for chunk in transcript.chunks),
        "chunks": [{"chunk_order": chunk.number, "start": chunk.start, "end": chunk.end, "text": chunk.text,
                    "language": chunk.language,
                    "segments": [segment.to_json() | {"confidence": segment.confidence}
                                 for segment in chunk.segments]}
                   for chunk in transcript.chunks],
    }


@hookimpl
def lazyd_register_exporters() -> list[Exporter]:
    return [JsonExporter()]
