"""Word documents (.docx, also served as the seed's ``doc``): a title, the details, timestamped paragraphs."""

from __future__ import annotations

import io

from .. import hookimpl
from ..exporters import ExportOptions, Exporter, Transcript, clock, language_label, paragraphs


class DocxExporter(Exporter):
    name = "docx"
    media_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    suffix = "docx"
    description = "Word document with a title, the recording's details and timestamped paragraphs"

    def render(self, transcript: Transcript, options: ExportOptions) -> bytes:
        from docx import Document
        from docx.shared import RGBColor

        document = Document()
        document.core_properties.title = transcript.title
        document.add_heading(transcript.title, level=1)
        details = [f"Recording: {transcript.title}", f"Duration: {clock(transcript.duration_secs)}",
                   f"Date: {transcript.created:%Y-%m-%d %H:%M} UTC"]
        if transcript.model:
            details.append(f"Model: {transcript.model}")
        if transcript.language:
            details.append(f"Language: {language_label(transcript)}")
        document.add_paragraph("\n".join(details)).runs[0].italic = True
        for paragraph in paragraphs(transcript):
            block = document.add_paragraph()
            stamp = block.add_run(f"[{clock(paragraph.start)}] ")
            stamp.bold = True
            stamp.font.color.rgb = RGBColor(0x59, 0x59, 0x59)
            block.add_run(_printable(paragraph.text))
        buffer = io.BytesIO()
        document.save(buffer)
        return buffer.getvalue()


def _printable(text: str) -> str:
    """XML 1.0 forbids most control characters; a stray one from a decoder must not break the file."""
    return "".join(char for char in text if char in "\t\n" or ord(char) >= 0x20)


@hookimpl
def lazyd_register_exporters() -> list[Exporter]:
    return [DocxExporter()]
