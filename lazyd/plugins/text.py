"""Plain text (the seed's export: chunk texts joined by a blank line) and Markdown."""

from __future__ import annotations

from collections.abc import Iterator

from .. import hookimpl
from ..exporters import ExportOptions, Exporter, StreamingExporter, Transcript, clock, paragraphs


class TextExporter(StreamingExporter):
    name = "txt"
    media_type = "text/plain; charset=utf-8"
    suffix = "txt"
    description = "plain text: chunk texts joined by a blank line, or timestamped segments"

    def stream(self, transcript: Transcript, options: ExportOptions) -> Iterator[bytes]:
        if not options.timestamps:
            yield "\n\n".join(chunk.text for chunk in transcript.chunks).encode("utf-8")
            return
        for segment in transcript.segments:
            if text := segment.shown_text.strip():
                yield f"[{clock(segment.start)}] {text}\n".encode("utf-8")


class MarkdownExporter(StreamingExporter):
    name = "md"
    media_type = "text/markdown; charset=utf-8"
    suffix = "md"
    description = "Markdown: a heading, the recording's details, timestamped paragraphs"

    def stream(self, transcript: Transcript, options: ExportOptions) -> Iterator[bytes]:
        yield f"# {_escape(transcript.title)}\n\n".encode("utf-8")
        details = [f"Duration: {clock(transcript.duration_secs)}",
                   f"Uploaded: {transcript.created:%Y-%m-%d %H:%M} UTC"]
        if transcript.model:
            details.append(f"Model: {_escape(transcript.model)}")
        yield ("".join(f"- {line}\n" for line in details) + "\n").encode("utf-8")
        for paragraph in paragraphs(transcript):
            yield f"**[{clock(paragraph.start)}]** {_escape(paragraph.text)}\n\n".encode("utf-8")


def _escape(text: str) -> str:
    """Keep spoken text from turning into Markdown markup (emphasis, links, headings, HTML)."""
    return "".join(f"\\{char}" if char in "\\`*_{}[]<>#|" else char for char in text)


@hookimpl
def lazyd_register_exporters() -> list[Exporter]:
    return [TextExporter(), MarkdownExporter()]
