"""Correcting and labelling segments (issue 14): ``PATCH /transcript/segments/{chunk}/{segment}``; the
machine's text is kept and can be restored, exports and search use the correction and show the label."""

from __future__ import annotations

import io
import json

import docx
import pytest

from test_search import Lectures


@pytest.fixture
async def lecture(client, accounts):
    headers = await accounts.headers("alice")
    me = await (await client.get("/auth/info", headers=headers)).json()
    job_id = await Lectures(client).add(me["id"], "thermo.wav", [
        [(0.0, 4.0, "Professor Smyth explains heat engines."), (4.0, 8.0, "Why is the cycle reversible?")]])
    return headers, job_id


async def change(client, headers, job_id, chunk: int, segment: int, **body):
    return await client.patch(f"/transcript/segments/{chunk}/{segment}?transcript_id={job_id}", json=body,
                              headers=headers)


async def export(client, headers, job_id, name: str) -> bytes:
    response = await client.get(f"/transcript/export?task_id={job_id}&format={name}", headers=headers)
    assert response.status == 200
    return await response.read()


async def search_total(client, headers, word: str) -> int:
    return (await (await client.get("/search", params={"q": word}, headers=headers)).json())["total"]


async def test_a_correction_is_kept_beside_the_machines_text_and_reaches_exports_and_search(client, lecture):
    headers, job_id = lecture
    response = await change(client, headers, job_id, 0, 0, text="Professor Smith explains heat engines.")
    assert response.status == 200
    assert await response.json() == {"chunk_order": 0, "segment_no": 0, "start": 0.0, "end": 4.0,
                                     "text": "Professor Smith explains heat engines.", "edited": True, "label": "",
                                     "machine_text": "Professor Smyth explains heat engines."}
    [first, _] = (await (await client.get(f"/transcript/segments?transcript_id={job_id}", headers=headers)).json())[
        "segments"]
    assert (first["text"], first["edited"], first["segment_no"]) == ("Professor Smith explains heat engines.", True, 0)
    for name in ("srt", "vtt", "txt", "json"):
        body = (await export(client, headers, job_id, name)).decode()
        assert "Smith" in body and "Smyth" not in body, name
    assert "Professor Smith" in "\n".join(p.text for p in docx.Document(io.BytesIO(await export(
        client, headers, job_id, "docx"))).paragraphs)
    assert (await search_total(client, headers, "Smith"), await search_total(client, headers, "Smyth")) == (1, 0)

    restored = await (await change(client, headers, job_id, 0, 0, restore=True)).json()
    assert (restored["text"], restored["edited"]) == ("Professor Smyth explains heat engines.", False)
    assert "Smyth" in (await export(client, headers, job_id, "srt")).decode()
    assert (await search_total(client, headers, "Smith"), await search_total(client, headers, "Smyth")) == (0, 1)


async def test_a_label_appears_in_docx_srt_vtt_and_json(client, lecture):
    headers, job_id = lecture
    labelled = await (await change(client, headers, job_id, 0, 1, label="Question from the audience")).json()
    assert (labelled["label"], labelled["edited"]) == ("Question from the audience", False)
    for name in ("srt", "vtt"):  # a long cue is wrapped over two lines
        cues = " ".join((await export(client, headers, job_id, name)).decode().split())
        assert "[Question from the audience] Why is the cycle reversible?" in cues, name
    paragraphs = docx.Document(io.BytesIO(await export(client, headers, job_id, "docx"))).paragraphs
    assert any("[Question from the audience] Why is the cycle reversible?" in p.text for p in paragraphs)
    [chunk] = json.loads(await export(client, headers, job_id, "json"))["chunks"]
    assert [segment.get("label") for segment in chunk["segments"]] == [None, "Question from the audience"]
    assert chunk["segments"][1]["text"] == "Why is the cycle reversible?", "the label is beside the text, not in it"


async def test_another_users_segment_or_a_missing_one_is_not_found(client, accounts, lecture):
    headers, job_id = lecture
    bob = await accounts.headers("bobby")
    assert (await change(client, bob, job_id, 0, 0, text="mine now")).status == 404
    assert (await change(client, headers, job_id, 0, 7, text="nothing here")).status == 404
    assert (await change(client, headers, job_id, 3, 0, text="nothing here")).status == 404
    assert "Smyth" in (await export(client, headers, job_id, "txt")).decode(), "nothing changed"


@pytest.mark.parametrize("body", [{"text": ""}, {"text": "   "}, {"text": "x" * 2001}, {"label": "y" * 201},
                                  {"text": 5}, {"restore": "yes please"}])
async def test_a_bad_change_is_refused_and_changes_nothing(client, lecture, body):
    headers, job_id = lecture
    assert (await change(client, headers, job_id, 0, 0, **body)).status == 422
    [first, _] = (await (await client.get(f"/transcript/segments?transcript_id={job_id}", headers=headers)).json())[
        "segments"]
    assert (first["text"], first["label"], first["edited"]) == ("Professor Smyth explains heat engines.", "", False)
