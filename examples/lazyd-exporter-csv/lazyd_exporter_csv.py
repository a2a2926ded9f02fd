"""A lazyd exporter plugin: the transcript's segments as CSV (start, end, text), for spreadsheets.

This whole plugin is this module plus one entry point in pyproject.toml; see docs/plugins.md.
"""

import csv
import io

from lazyd import ExportOptions, Exporter, Transcript, hookimpl


class CsvExporter(Exporter):
    name = "csv"
    media_type = "text/csv; charset=utf-8"
    suffix = "csv"
    description = "segments as CSV: start and end in seconds, then the text"

    def render(self, transcript: Transcript, options: ExportOptions) -> bytes:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["start", "end", "text"])
        for segment in transcript.segments:
            writer.writerow([f"{segment.start:.2f}", f"{segment.end:.2f}", segment.text.strip()])
        return buffer.getvalue().encode("utf-8")


@hookimpl
def lazyd_register_exporters():
    return [CsvExporter()]
