"""Job options: how one recording is transcribed, each option defined once, here.

:class:`TranscribeOptions` are the decoding options a backend receives; :class:`JobOptions` adds the
model that decodes. Everything else is derived from these two definitions:

- the ``[transcription]`` configuration keys and their defaults (``TranscriptionConfig`` inherits
  :class:`JobOptions`);
- :data:`JobOverrides`, the same options with "not set" (``None``) as every default: what an ``[[inbox]]``
  entry, an upload's form fields and ``lazyd transcribe``'s flags may change for one job, and what a job
  stores (:func:`stored_options`, :func:`load_options`);
- the upload form fields and the command-line flags (:func:`option_specs`, read by the web and CLI layers).

An empty string means "not set" for every text option, so ``language = ""`` in config.toml detects the
language as before.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

TRUE_WORDS = ("1", "on", "t", "true", "y", "yes")
FALSE_WORDS = ("0", "off", "f", "false", "n", "no")
"""The spellings of a boolean in text (environment, query strings, form fields): pydantic's, as the seed had."""


def parse_bool(text: str) -> bool:
    """The one boolean parser for text; ``ValueError`` for anything but :data:`TRUE_WORDS` and :data:`FALSE_WORDS`."""
    lowered = text.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def from_text(text: str, kind: type) -> Any:
    """An option's value from text (a form field, a flag, an environment variable); ``ValueError`` if it is none."""
    if kind is bool:
        return parse_bool(text)
    if kind is int:
        return int(text.strip())
    if kind is float:
        return float(text.strip())
    return text


def _between(low: int, high: int, name: str) -> Callable[[int], str | None]:
    return lambda number: None if low <= number <= high else f"{name} must be between {low} and {high}"


def _task(task: str) -> str | None:
    return None if task in TASKS else "task must be 'transcribe' or 'translate'"


TASKS = ("transcribe", "translate")


def _language_code(code: str) -> str | None:
    return None if re.fullmatch(r"[a-z]{2,3}", code) else "language must be an ISO 639-1 code such as 'en'"


def option(default: Any, help: str, *, check: Callable[[Any], str | None] | None = None,
           flags: tuple[str, ...] = (), from_clients: bool = True) -> Any:
    """A job option. ``check`` returns a problem or ``None``; ``flags`` are its command-line spellings
    (default ``--name-with-dashes``); ``from_clients`` is whether an API client may set it."""
    return field(default=default, metadata={"help": help, "check": check, "flags": flags,
                                            "from_clients": from_clients})


class _EmptyIsUnset:
    """Dataclass mix-in: an empty text option is the same as one not given."""

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]
            if spec.metadata.get("help") is not None and getattr(self, spec.name) == "":
                object.__setattr__(self, spec.name, None)


@dataclass(frozen=True)
class TranscribeOptions(_EmptyIsUnset):
    """Per-job decoding options, as a backend receives them."""

    language: str | None = option(None, "ISO 639-1 code; not set: detect it (English-only models always "
                                  "decode English)", check=_language_code)
    beam_size: int = option(5, "beam search width", check=_between(1, 20, "beam_size"))
    initial_prompt: str | None = option(None, "text that sets a course's vocabulary and style",
                                        flags=("--initial-prompt", "--prompt"))
    hotwords: str | None = option(None, "words to favour, e.g. \"Carnot entropy adiabatic\"")
    vad_filter: bool = option(True, "leave out what voice activity detection finds without speech: long "
                              "stretches are not decoded, segments inside shorter ones are dropped")
    word_timestamps: bool = option(True, "time every word")
    batch_size: int = option(0, "0 decodes sequentially; above 0, speech segments found by VAD are decoded "
                             "in batches of this size", check=_between(0, 64, "batch_size"))
    task: str = option("transcribe", "transcribe, or translate the speech into English (multilingual models "
                       "only)", check=_task)


@dataclass(frozen=True)
class JobOptions(TranscribeOptions):
    """Everything that decides how one job is transcribed: the decoding options and the model."""

    model: str | None = option(None, "a model name or path; not set: the backend's default",
                               from_clients=False)

    def decoding(self) -> TranscribeOptions:
        """The options a backend receives (the model is the worker's business, not the decoder's)."""
        return TranscribeOptions(**{spec.name: getattr(self, spec.name)
                                    for spec in dataclasses.fields(TranscribeOptions)})

    def with_overrides(self, overrides: Any) -> JobOptions:
        """These options, changed where ``overrides`` (a :data:`JobOverrides`) sets a value."""
        return dataclasses.replace(self, **stored_options(overrides))

    @classmethod
    def of(cls, settings: JobOptions) -> JobOptions:
        """Just the job options of ``settings`` (the ``[transcription]`` table, which has more keys)."""
        return cls(**{spec.name: getattr(settings, spec.name) for spec in dataclasses.fields(cls)})


@dataclass(frozen=True)
class OptionSpec:
    """One job option as the front ends see it."""

    name: str
    kind: type
    """``str``, ``int`` or ``bool``: the value's type once set."""
    default: Any
    help: str
    check: Callable[[Any], str | None] | None
    flags: tuple[str, ...]
    from_clients: bool

    def problem(self, value: Any) -> str | None:
        return self.check(value) if self.check and value is not None else None


def _value_type(hint: Any) -> type:
    """``str`` for ``str | None``, ``int`` for ``int``."""
    if isinstance(hint, types.UnionType):
        return next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def option_specs() -> tuple[OptionSpec, ...]:
    """Every job option, in definition order."""
    hints = typing.get_type_hints(JobOptions)
    return tuple(
        OptionSpec(spec.name, _value_type(hints[spec.name]), spec.default, spec.metadata["help"],
                   spec.metadata["check"], spec.metadata["flags"] or (f"--{spec.name.replace('_', '-')}",),
                   spec.metadata["from_clients"])
        for spec in dataclasses.fields(JobOptions))


def _make_overrides() -> type:
    fields = [(spec.name, spec.kind | None, option(None, spec.help, check=spec.check, flags=spec.flags,
                                                   from_clients=spec.from_clients))
              for spec in option_specs()]
    made = dataclasses.make_dataclass("JobOverrides", fields, bases=(_EmptyIsUnset,), frozen=True)
    made.__module__ = __name__
    made.__doc__ = "Every job option, ``None`` where a job keeps the configured default."
    return made


JobOverrides: type = _make_overrides()


def stored_options(overrides: Any) -> dict[str, Any]:
    """What a job stores: the options set, by name (the ``options`` column)."""
    return {spec.name: value for spec in option_specs() if (value := getattr(overrides, spec.name)) is not None}


def load_options(stored: Mapping[str, Any]) -> Any:
    """A job's stored options as :data:`JobOverrides`; a key that is unknown or of the wrong type is left out
    (logged), so that no stored row can stop a job from running."""
    values = {}
    for spec in option_specs():
        value = stored.get(spec.name)
        if value is None:
            continue
        if type(value) is spec.kind:
            values[spec.name] = value
        else:
            log.warning("ignoring stored option %s=%r: not a %s", spec.name, value, spec.kind.__name__)
    return JobOverrides(**values)


def overrides_from(values: Mapping[str, Any]) -> Any:
    """:data:`JobOverrides` from validated values by name (missing names stay unset)."""
    return JobOverrides(**{spec.name: values.get(spec.name) for spec in option_specs()})
