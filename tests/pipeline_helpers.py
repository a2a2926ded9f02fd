"""Helpers for tests that run whole jobs through the scheduler with the FAKE tone backend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy
from aiohttp.test_utils import TestClient

from lazyd.store import TranscriptionChunk
from media import silence, tone, write_audio

TONES = [300, 400, 500, 600, 700, 800, 900, 1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900, 2000,
         2100, 2200]


def tone_sequence(path: Path, freqs: list[int]) -> Path:
    """One second per frequency, with a short pause every eighth second where a chunk can be cut."""
    parts = []
    for n, freq in enumerate(freqs):
        parts.append(tone(freq, 0.9 if n % 8 == 7 else 1.0))
        if n % 8 == 7:
            parts.append(silence(0.1))
    return write_audio(path, numpy.concatenate(parts))


async def upload(client: TestClient, headers: dict[str, str], path: Path, **fields: str) -> aiohttp.ClientResponse:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("audiofile", path.read_bytes(), filename=path.name, content_type="audio/wav")
    return await client.post("/upload-audiofile", data=form, headers=headers)


async def wait_for_state(client: TestClient, headers: dict[str, str], job_id: int, states: tuple[str, ...],
                         timeout: float = 60) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = await (await client.get(f"/transcript/info?transcript_id={job_id}", headers=headers)).json()
        if info["current_state"] in states:
            return info
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"transcription {job_id} stayed {info['current_state']}, wanted {states}")
        await asyncio.sleep(0.1)


async def chunk_texts(job_id: int) -> list[str]:
    rows = await TranscriptionChunk._meta.database.list(
        TranscriptionChunk.select().where(TranscriptionChunk.transcription == job_id)
        .order_by(TranscriptionChunk.chunk_no))
    return [row.text for row in rows]


def expected_text(freqs: list[int]) -> str:
    return " ".join(f"tone{freq}" for freq in freqs)
