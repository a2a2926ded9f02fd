"""Job options are defined once (lazyd/options.py); every front end derives its fields from that definition."""

from __future__ import annotations

import dataclasses

import pytest
from aiohttp.test_utils import make_mocked_request

from lazyd.cli import build_parser
from lazyd.config import ConfigError, InboxConfig, TranscriptionConfig, load_config
from lazyd.options import (FALSE_WORDS, TRUE_WORDS, JobOptions, JobOverrides, TranscribeOptions, load_options,
                           option_specs, parse_bool, stored_options)
from lazyd.web.api import Param
from lazyd.web.transcription_routes import OPTION_FIELDS

NAMES = [spec.name for spec in option_specs()]


def test_every_option_is_a_config_key_an_inbox_key_and_a_cli_flag():
    assert NAMES == ["language", "beam_size", "initial_prompt", "hotwords", "vad_filter", "word_timestamps",
                     "batch_size", "task", "model"]
    config_keys = {spec.name for spec in dataclasses.fields(TranscriptionConfig)}
    inbox_keys = {spec.name for spec in dataclasses.fields(InboxConfig)}
    assert set(NAMES) <= config_keys and set(NAMES) <= inbox_keys
    args = build_parser().parse_args(["transcribe", "x.wav", "--language", "de", "--beam-size", "3", "--prompt", "Carnot",
                                      "--hotwords", "entropy", "--no-word-timestamps", "--vad-filter",
                                      "--batch-size", "4", "--task", "translate", "--model", "small.en"])
    assert {name: getattr(args, name) for name in NAMES} == {
        "language": "de", "beam_size": 3, "initial_prompt": "Carnot", "hotwords": "entropy", "vad_filter": True,
        "word_timestamps": False, "batch_size": 4, "task": "translate", "model": "small.en"}


def test_the_upload_form_takes_every_option_but_the_model():
    assert [field.name for field in OPTION_FIELDS] == [name for name in NAMES if name != "model"]


def test_a_task_other_than_transcribe_or_translate_is_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["transcribe", "x.wav", "--task", "summarize"])
    assert "task must be 'transcribe' or 'translate'" in capsys.readouterr().err


def test_a_flag_out_of_range_is_refused_with_the_options_own_message(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["transcribe", "x.wav", "--beam-size", "99"])
    assert "beam_size must be between 1 and 20" in capsys.readouterr().err


def test_the_config_defaults_are_the_options_defaults():
    assert JobOptions.of(TranscriptionConfig()) == JobOptions()
    assert JobOptions().decoding() == TranscribeOptions()


def test_an_empty_text_option_is_not_set():
    assert TranscriptionConfig(language="", initial_prompt="").language is None
    assert InboxConfig(path="/in", user="alice", outbox="/out", hotwords="").hotwords is None


def test_overrides_change_only_what_they_set():
    defaults = JobOptions(language="en", beam_size=5)
    changed = defaults.with_overrides(JobOverrides(beam_size=2))
    assert (changed.language, changed.beam_size, changed.word_timestamps) == ("en", 2, True)


def test_options_stored_by_earlier_versions_load_and_bad_keys_are_left_out():
    stored = {"language": "fr", "initial_prompt": "Thermodynamique", "model": "/models/course", "beam_size": 3,
              "vad_filter": "yes", "retired_option": 1, "batch_size": True}
    loaded = load_options(stored)
    assert stored_options(loaded) == {"language": "fr", "initial_prompt": "Thermodynamique",
                                      "model": "/models/course", "beam_size": 3}


@pytest.mark.parametrize("word", TRUE_WORDS + FALSE_WORDS)
def test_one_boolean_parser_for_config_queries_and_forms(tmp_path, word):
    expected = word in TRUE_WORDS
    assert parse_bool(word.upper()) is expected
    assert Param("flag", bool).read(make_mocked_request("GET", f"/?flag={word}")) is expected
    config = load_config(None, data_dir=tmp_path, env={"LAZYD_TRANSCRIPTION__VAD_FILTER": word})
    assert config.transcription.vad_filter is expected


def test_a_word_that_is_no_boolean_is_refused(tmp_path):
    with pytest.raises(ValueError):
        parse_bool("maybe")
    with pytest.raises(ConfigError, match="vad_filter"):
        load_config(None, data_dir=tmp_path, env={"LAZYD_TRANSCRIPTION__VAD_FILTER": "maybe"})
