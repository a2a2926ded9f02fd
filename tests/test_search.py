"""``GET /search`` (issue 14): full-text search over a user's segments, on SQLite (FTS5) and PostgreSQL."""

from __future__ import annotations

import pytest

from lazyd.jobs.states import ChunkResult
from lazyd.search import MARK_END, MARK_START
from lazyd.store import Transcription
from lazyd.web.keys import DAEMON


def marked(word: str) -> str:
    return f"{MARK_START}{word}{MARK_END}"


class Lectures:
    """Transcriptions with known segments, saved the way the scheduler saves chunks."""

    def __init__(self, client) -> None:
        self.client = client

    async def add(self, owner_id: int, title: str, chunks: list[list[tuple[float, float, str]]]) -> int:
        job = await Transcription.acreate(creator=owner_id, audio_len_secs=60.0, chunk_size_secs=30.0,
                                          current_state="queued", filename=title)
        for number, segments in enumerate(chunks):
            await self.save(job.id, number, segments)
        return job.id

    async def save(self, job_id: int, number: int, segments: list[tuple[float, float, str]]) -> None:
        result = ChunkResult(number, segments[0][0], segments[-1][1], " ".join(text for _, _, text in segments),
                             [{"start": start, "end": end, "text": text} for start, end, text in segments])
        assert await self.client.app[DAEMON].states.save_chunk(job_id, None, result)


@pytest.fixture
async def corpus(client, accounts):
    """Alice's two lectures and Bob's one; returns their headers and Alice's ids."""
    alice, bob = await accounts.headers("alice"), await accounts.headers("bobby")
    ids = {}
    for name, headers in (("alice", alice), ("bobby", bob)):
        ids[name] = (await (await client.get("/auth/info", headers=headers)).json())["id"]
    lectures = Lectures(client)
    thermo = await lectures.add(ids["alice"], "thermo.wav", [
        [(0.0, 4.0, "Heat engines convert heat into work."), (4.0, 8.0, "The Carnot cycle is reversible.")],
        [(30.0, 34.0, "Entropy never decreases in an isolated system.")]])
    waves = await lectures.add(ids["alice"], "waves.wav", [
        [(0.0, 5.0, "Heat, heat, heat: everywhere heat."), (5.0, 9.0, "Waves carry energy.")]])
    await lectures.add(ids["bobby"], "secret.wav", [[(0.0, 3.0, "Heat engines are Bob's secret.")]])
    return {"alice": alice, "bob": bob, "thermo": thermo, "waves": waves, "lectures": lectures}


async def hits(client, headers, query: str) -> dict:
    response = await client.get("/search", params={"q": query}, headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_hit_names_its_lecture_moment_and_marks_the_words(client, corpus):
    found = await hits(client, corpus["alice"], "heat engines")
    assert found["total"] == 1
    [hit] = found["hits"]
    assert (hit["transcription_id"], hit["title"], hit["chunk_order"], hit["start"], hit["end"]) == (
        corpus["thermo"], "thermo.wav", 0, 0.0, 4.0)
    assert hit["text"] == "Heat engines convert heat into work."
    assert marked("Heat") in hit["snippet"] and marked("engines") in hit["snippet"]


async def test_the_segment_that_says_it_most_comes_first(client, corpus):
    found = await hits(client, corpus["alice"], "heat")
    assert [(hit["transcription_id"], hit["start"]) for hit in found["hits"]] == [
        (corpus["waves"], 0.0), (corpus["thermo"], 0.0)]
    later = await hits(client, corpus["alice"], "entropy")
    assert [(hit["chunk_order"], hit["start"]) for hit in later["hits"]] == [(1, 30.0)]


async def test_no_hit_from_another_users_lectures(client, corpus):
    assert (await hits(client, corpus["alice"], "secret"))["total"] == 0
    assert (await hits(client, corpus["bob"], "carnot"))["total"] == 0
    [bobs] = (await hits(client, corpus["bob"], "heat engines"))["hits"]
    assert bobs["title"] == "secret.wav"


async def test_a_chunk_saved_again_replaces_its_words_and_a_deleted_lecture_leaves_none(client, corpus):
    await corpus["lectures"].save(corpus["thermo"], 1, [(30.0, 34.0, "Enthalpy is a state function.")])
    assert (await hits(client, corpus["alice"], "entropy"))["total"] == 0
    assert (await hits(client, corpus["alice"], "enthalpy"))["total"] == 1
    assert (await client.delete(f"/transcript?transcript_id={corpus['waves']}", headers=corpus["alice"])).status == 204
    assert [hit["transcription_id"] for hit in (await hits(client, corpus["alice"], "heat"))["hits"]] == [
        corpus["thermo"]]


@pytest.mark.parametrize("query", ['"', "AND", "heat*", "NEAR(heat", "title:heat", "'", "heat OR", "-heat", "ünïcødé"])
async def test_any_query_is_words_never_syntax(client, corpus, query):
    found = await hits(client, corpus["alice"], query)
    assert found["total"] >= 0 and isinstance(found["hits"], list)


async def test_pages_of_hits(client, corpus):
    first = (await (await client.get("/search", params={"q": "heat", "size": "1"}, headers=corpus["alice"])).json())
    second = (await (await client.get("/search", params={"q": "heat", "size": "1", "page": "2"},
                                      headers=corpus["alice"])).json())
    assert (first["total"], first["pages"], len(first["hits"]), len(second["hits"])) == (2, 2, 1, 1)
    assert first["hits"][0] != second["hits"][0]


@pytest.mark.parametrize("query", ["", "   ", "x" * 201])
async def test_an_empty_or_huge_query_is_refused(client, corpus, query):
    response = await client.get("/search", params={"q": query}, headers=corpus["alice"])
    assert response.status == 422
    assert (await response.json())["detail"][0]["loc"] == ["query", "q"]
