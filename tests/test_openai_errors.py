"""The OpenAI-compatible routes (issue 12) that need no backend: models, translations refused for an
English-only model, and every error in OpenAI's shape, leaving nothing behind."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import openai
import pytest

from lazyd.web.keys import CONFIG
from speech import LECTURE_SENTENCES, joined_speech_file
from test_openai_api import api_key, openai_client
from world import snapshot


@pytest.fixture(scope="module")
def lecture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return joined_speech_file(tmp_path_factory.getbasetemp() / "speech", LECTURE_SENTENCES[:5], pause_secs=1.0)


# -- models and translations --------------------------------------------------------------------------------

async def test_models_lists_what_this_node_serves(client, accounts):
    async with openai_client(client, await api_key(client, accounts)) as api:
        listed = await api.models.list()
        assert [model.id for model in listed.data] == ["whisper-1", "tiny.en"]
        assert (await api.models.retrieve("tiny.en")).owned_by == "lazyd"
        with pytest.raises(openai.NotFoundError) as missing:
            await api.models.retrieve("large-v9")
    assert missing.value.body["code"] == "not_found"


async def test_translating_with_an_english_only_model_is_a_400_naming_why(client, accounts, lecture):
    key = await api_key(client, accounts)
    before = await snapshot(client.app[CONFIG].data_path)
    async with openai_client(client, key) as api:
        # openai 3 marks its translations call deprecated; clients still send it, so lazyd serves it
        with lecture.open("rb") as audio, pytest.warns(DeprecationWarning), \
                pytest.raises(openai.BadRequestError) as refused:
            await api.audio.translations.create(file=audio, model="whisper-1")
    assert "tiny.en is English-only and cannot translate" in refused.value.body["message"]
    assert (refused.value.body["param"], refused.value.body["code"]) == ("model", "translation_unsupported")
    assert await snapshot(client.app[CONFIG].data_path) == before


# -- errors in OpenAI's shape, and nothing left behind ------------------------------------------------------

def form_of(lecture: Path | None, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    if lecture is not None:
        form.add_field("file", lecture.read_bytes(), filename=lecture.name, content_type="audio/wav")
    return form


@pytest.mark.parametrize("fields, with_file, param, code", [
    ({}, False, "file", "missing"),
    ({"response_format": "mp3"}, True, "response_format", "enum"),
    ({"model": "large-v9"}, True, "model", "model_not_found"),
    ({"temperature": "2"}, True, "temperature", "value_error"),
    ({"temperature": "warm"}, True, "temperature", "float_parsing"),
    ({"stream": "maybe"}, True, "stream", "bool_parsing"),
    ({"stream": "true", "response_format": "srt"}, True, "stream", "value_error"),
    ({"timestamp_granularities[]": "sentence"}, True, "timestamp_granularities[]", "enum"),
    ({"language": "english"}, True, "language", "value_error"),
])
async def test_a_bad_request_is_a_400_in_openais_shape_and_changes_nothing(client, accounts, lecture, fields,
                                                                         with_file, param, code):
    key = await api_key(client, accounts)
    before = await snapshot(client.app[CONFIG].data_path)
    response = await client.post("/v1/audio/transcriptions", data=form_of(lecture if with_file else None, **fields),
                                 headers={"Authorization": f"Bearer {key}"})
    assert response.status == 400, await response.text()
    error = (await response.json())["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert error["message"]
    assert await snapshot(client.app[CONFIG].data_path) == before


@pytest.mark.parametrize("authorization", [None, "Bearer lzd_00000000_forged", "Bearer not.a.jwt"])
async def test_no_or_a_bad_key_is_a_401_in_openais_shape(client, lecture, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/audio/transcriptions")):
        response = await client.request(method, path, data=form_of(lecture) if method == "POST" else None,
                                        headers=headers)
        assert response.status == 401
        error = (await response.json())["error"]
        assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"


async def test_a_user_who_may_not_upload_gets_a_403_in_openais_shape(client, accounts, lecture):
    headers = await accounts.headers("bobby")
    response = await client.post("/v1/audio/transcriptions", data=form_of(lecture), headers=headers)
    assert response.status == 403
    assert re.search("can_interact", (await response.json())["error"]["message"])


async def test_not_audio_is_a_415_and_the_seed_routes_keep_their_shape(client, accounts, tmp_path):
    key = await api_key(client, accounts)
    text = tmp_path / "notes.wav"
    text.write_text("these are lecture notes, not a recording\n" * 100)
    before = await snapshot(client.app[CONFIG].data_path)
    response = await client.post("/v1/audio/transcriptions", data=form_of(text),
                                 headers={"Authorization": f"Bearer {key}"})
    assert response.status == 415
    assert (await response.json())["error"]["code"] == "invalid_file_format"
    assert await snapshot(client.app[CONFIG].data_path) == before
    seed = await client.get("/transcript/info?transcript_id=1", headers={"Authorization": f"Bearer {key}"})
    assert set(await seed.json()) == {"detail"}
