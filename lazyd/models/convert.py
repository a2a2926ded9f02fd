"""``lazyd models convert``: a CTranslate2 Whisper model (what faster-whisper loads) as a whisper.cpp ggml file.

One model then serves both backends, and the whisper.cpp backend can be tested offline with the real
weights of the bundled ``tiny.en``. Both formats are read and written with numpy alone; the weights are
memory-mapped and written one tensor at a time, so a large model is never held in memory whole.

CTranslate2's ``model.bin`` (little-endian): u32 version, string spec name, u32 revision, u32 variable
count; per variable: string name, u8 rank, rank x u32 dims, u8 dtype, u32 byte count, the data; then a
u32 alias count and (alias, target) string pairs. A string is a u16 length that counts a trailing NUL,
then the bytes. An int8 weight comes with ``<name>_scale``, one f32 per output row (value = q / scale).

whisper.cpp's ggml file: 12 i32 (magic, then the model's dimensions and ftype 1), the mel filters, the
first 50,257 tokens of the vocabulary as raw bytes, then the tensors (i32 rank, i32 name length, i32 type
0 f32 / 1 f16, the dims in reverse order, the name, the data). Matrices are f16; 1-D tensors, the conv
biases (as [n, 1]) and the positional embeddings f32, as whisper.cpp's own converter writes them.
whisper.cpp refuses a file with a tensor it does not know or without one it expects.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

GGML_MAGIC = 0x67676D6C
GGML_F32, GGML_F16 = 0, 1
BASE_VOCABULARY = 50257
"""GPT-2's byte-level tokens, which whisper.cpp reads from the file; it makes the special tokens itself."""
END_OF_TEXT = 50256

CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
"""CTranslate2's dtype codes (5, bfloat16, has no numpy type and is refused)."""


class ConversionError(ValueError):
    """The source is not a CTranslate2 Whisper model this converter understands; the message says why."""


@dataclass(frozen=True)
class Variable:
    name: str
    shape: tuple[int, ...]
    dtype: int
    offset: int
    """Where the data starts in the file."""


class CTranslate2Model:
    """The variables of a CTranslate2 ``model.bin``, read lazily from a memory map."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        path = directory / "model.bin"
        if not path.is_file():
            raise ConversionError(f"{directory} is not a CTranslate2 model: it has no model.bin")
        with path.open("rb") as stream:
            self.spec, self.variables, self.aliases = _read_index(stream)
        if self.spec != "WhisperSpec":
            raise ConversionError(f"{path} holds a {self.spec}, not a Whisper model")
        self._map = np.memmap(path, dtype=np.uint8, mode="r")

    def array(self, name: str) -> np.ndarray:
        """The variable as float32 (int8 weights scaled back), or as stored for integer scalars."""
        name = self.aliases.get(name, name)
        variable = self.variables[name]
        if variable.dtype not in CT2_DTYPES:
            raise ConversionError(f"variable {name} has dtype {variable.dtype}, which is not supported")
        dtype = np.dtype(CT2_DTYPES[variable.dtype])
        count = int(np.prod(variable.shape)) if variable.shape else 1
        data = self._map[variable.offset:variable.offset + count * dtype.itemsize].view(dtype).reshape(variable.shape)
        if variable.dtype == 1 and f"{name}_scale" in self.variables:
            return data.astype(np.float32) / self.array(f"{name}_scale").reshape(-1, *([1] * (data.ndim - 1)))
        return data

    def scalar(self, name: str) -> int:
        return int(self.array(name))

    def layers(self, stack: str) -> int:
        return len({part for name in self.variables if name.startswith(f"{stack}/")
                    if re.fullmatch(r"layer_\d+", part := name.split("/")[1])})


def _read_index(stream: BinaryIO) -> tuple[str, dict[str, Variable], dict[str, str]]:
    def u32() -> int:
        return struct.unpack("<I", stream.read(4))[0]

    def string() -> str:
        length = struct.unpack("<H", stream.read(2))[0]
        return stream.read(length)[:-1].decode()

    try:
        u32()  # format version
        spec = string()
        u32()  # spec revision
        variables = {}
        for _ in range(u32()):
            name = string()
            rank = stream.read(1)[0]
            shape = tuple(u32() for _ in range(rank))
            dtype = stream.read(1)[0]
            size = u32()
            variables[name] = Variable(name, shape, dtype, stream.tell())
            stream.seek(size, os.SEEK_CUR)
        aliases = dict((string(), string()) for _ in range(u32()))
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise ConversionError(f"model.bin is truncated or not a CTranslate2 model ({error})") from None
    return spec, variables, aliases


# -- the ggml side -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dimensions:
    n_vocab: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int
    n_mels: int

    @classmethod
    def of(cls, model: CTranslate2Model) -> Dimensions:
        audio_ctx, audio_state = model.variables["encoder/position_encodings/encodings"].shape
        text_ctx, text_state = model.variables["decoder/position_encodings/encodings"].shape
        return cls(n_vocab=model.variables["decoder/embeddings/weight"].shape[0], n_audio_ctx=audio_ctx,
                   n_audio_state=audio_state, n_audio_head=model.scalar("encoder/num_heads"),
                   n_audio_layer=model.layers("encoder"), n_text_ctx=text_ctx, n_text_state=text_state,
                   n_text_head=model.scalar("decoder/num_heads"), n_text_layer=model.layers("decoder"),
                   n_mels=model.variables["encoder/conv1/weight"].shape[1])

    @property
    def multilingual(self) -> bool:
        return self.n_vocab >= 51865


def convert(source: Path, destination: Path) -> Dimensions:
    """Write ``source`` (a CTranslate2 Whisper model directory) as the ggml file ``destination``.

    The file is written beside its destination under a temporary name and renamed when complete, so a
    failed conversion never leaves a half model where a backend would load it; the temporary name is unique,
    so two processes converting the same model at once each write their own whole file.
    """
    model = CTranslate2Model(source)
    dimensions = Dimensions.of(model)
    descriptor, name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent)
    partial = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(struct.pack("<12i", GGML_MAGIC, *vars(dimensions).values(), GGML_F16))
            _write_mel_filters(out, dimensions.n_mels)
            _write_vocabulary(out, _tokens(source), dimensions.multilingual)
            for name, data in _tensors(model, dimensions):
                _write_tensor(out, name, data)
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return dimensions


def _write_mel_filters(out: BinaryIO, n_mels: int) -> None:
    filters = mel_filters(n_mels)
    out.write(struct.pack("<2i", *filters.shape))
    out.write(filters.tobytes())


def mel_filters(n_mels: int, sample_rate: int = 16_000, n_fft: int = 400) -> np.ndarray:
    """Whisper's mel filter bank, ``(n_mels, n_fft / 2 + 1)`` float32: triangles on the Slaney mel scale
    (linear below 1 kHz, logarithmic above), each scaled to the same area (librosa's ``norm="slaney"``)."""
    bins = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(edges)
    rising = (bins[None, :] - edges[:n_mels, None]) / widths[:n_mels, None]
    falling = (edges[2:, None] - bins[None, :]) / widths[1:, None]
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return (triangles * (2.0 / (edges[2:] - edges[:n_mels]))[:, None]).astype(np.float32)


SLANEY_HZ_PER_MEL = 200.0 / 3
SLANEY_KNEE_HZ = 1000.0
SLANEY_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: float | np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    knee = SLANEY_KNEE_HZ / SLANEY_HZ_PER_MEL
    above = knee + np.log(np.maximum(hz, SLANEY_KNEE_HZ) / SLANEY_KNEE_HZ) / SLANEY_LOG_STEP
    return np.where(hz < SLANEY_KNEE_HZ, hz / SLANEY_HZ_PER_MEL, above)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    knee = SLANEY_KNEE_HZ / SLANEY_HZ_PER_MEL
    return np.where(mel < knee, mel * SLANEY_HZ_PER_MEL, SLANEY_KNEE_HZ * np.exp(SLANEY_LOG_STEP * (mel - knee)))


def _tokens(source: Path) -> list[str]:
    """The model's vocabulary, as CTranslate2 stores it beside the weights (one token per line, or JSON)."""
    if (text := source / "vocabulary.txt").is_file():
        return text.read_text(encoding="utf-8").split("\n")
    if (listing := source / "vocabulary.json").is_file():
        return json.loads(listing.read_text(encoding="utf-8"))
    raise ConversionError(f"{source} has no vocabulary.txt or vocabulary.json")


def _write_vocabulary(out: BinaryIO, tokens: list[str], multilingual: bool) -> None:
    if len(tokens) < BASE_VOCABULARY:
        raise ConversionError(f"the vocabulary has {len(tokens)} tokens, fewer than GPT-2's {BASE_VOCABULARY}")
    to_byte = {char: byte for byte, char in _bytes_to_unicode().items()}
    out.write(struct.pack("<i", BASE_VOCABULARY))
    for number, token in enumerate(tokens[:BASE_VOCABULARY]):
        raw = b"" if number == END_OF_TEXT and multilingual else bytes(to_byte[char] for char in token)
        out.write(struct.pack("<i", len(raw)) + raw)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: each byte as the printable character its tokens are spelled with."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return {**{byte: chr(byte) for byte in printable},
            **{byte: chr(256 + index) for index, byte in enumerate(others)}}


def _tensors(model: CTranslate2Model, dimensions: Dimensions) -> Iterator[tuple[str, np.ndarray]]:
    """Every tensor whisper.cpp expects, named as it names them, from the CTranslate2 variables."""
    yield "encoder.positional_embedding", model.array("encoder/position_encodings/encodings")
    for conv in ("conv1", "conv2"):
        yield f"encoder.{conv}.weight", model.array(f"encoder/{conv}/weight")
        yield f"encoder.{conv}.bias", model.array(f"encoder/{conv}/bias").reshape(-1, 1)
    for layer in range(dimensions.n_audio_layer):
        ct2, ggml = f"encoder/layer_{layer}", f"encoder.blocks.{layer}"
        yield from _self_attention(model, f"{ct2}/self_attention", ggml, "attn")
        yield from _feed_forward(model, ct2, ggml)
    yield from _layer_norm(model, "encoder/layer_norm", "encoder.ln_post")
    yield "decoder.positional_embedding", model.array("decoder/position_encodings/encodings")
    yield "decoder.token_embedding.weight", model.array("decoder/embeddings/weight")
    for layer in range(dimensions.n_text_layer):
        ct2, ggml = f"decoder/layer_{layer}", f"decoder.blocks.{layer}"
        yield from _self_attention(model, f"{ct2}/self_attention", ggml, "attn")
        yield from _cross_attention(model, f"{ct2}/attention", ggml)
        yield from _feed_forward(model, ct2, ggml)
    yield from _layer_norm(model, "decoder/layer_norm", "decoder.ln")


def _layer_norm(model: CTranslate2Model, ct2: str, ggml: str) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{ggml}.weight", model.array(f"{ct2}/gamma")
    yield f"{ggml}.bias", model.array(f"{ct2}/beta")


def _linear(model: CTranslate2Model, ct2: str, ggml: str) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{ggml}.weight", model.array(f"{ct2}/weight")
    yield f"{ggml}.bias", model.array(f"{ct2}/bias")


def _self_attention(model: CTranslate2Model, ct2: str, block: str, kind: str) -> Iterator[tuple[str, np.ndarray]]:
    """CTranslate2 fuses query, key and value into ``linear_0``; Whisper's key has no bias (CTranslate2
    stores a zero one inside the fused bias, which is left out)."""
    yield from _layer_norm(model, f"{ct2}/layer_norm", f"{block}.{kind}_ln")
    query, key, value = np.split(model.array(f"{ct2}/linear_0/weight"), 3)
    query_bias, _, value_bias = np.split(model.array(f"{ct2}/linear_0/bias"), 3)
    yield from ((f"{block}.{kind}.query.weight", query), (f"{block}.{kind}.query.bias", query_bias),
                (f"{block}.{kind}.key.weight", key), (f"{block}.{kind}.value.weight", value),
                (f"{block}.{kind}.value.bias", value_bias))
    yield from _linear(model, f"{ct2}/linear_1", f"{block}.{kind}.out")


def _cross_attention(model: CTranslate2Model, ct2: str, block: str) -> Iterator[tuple[str, np.ndarray]]:
    """Query in ``linear_0``, key and value fused in ``linear_1`` (the key without bias), out in ``linear_2``."""
    yield from _layer_norm(model, f"{ct2}/layer_norm", f"{block}.cross_attn_ln")
    yield from _linear(model, f"{ct2}/linear_0", f"{block}.cross_attn.query")
    key, value = np.split(model.array(f"{ct2}/linear_1/weight"), 2)
    _, value_bias = np.split(model.array(f"{ct2}/linear_1/bias"), 2)
    yield from ((f"{block}.cross_attn.key.weight", key), (f"{block}.cross_attn.value.weight", value),
                (f"{block}.cross_attn.value.bias", value_bias))
    yield from _linear(model, f"{ct2}/linear_2", f"{block}.cross_attn.out")


def _feed_forward(model: CTranslate2Model, ct2: str, block: str) -> Iterator[tuple[str, np.ndarray]]:
    yield from _layer_norm(model, f"{ct2}/ffn/layer_norm", f"{block}.mlp_ln")
    yield from _linear(model, f"{ct2}/ffn/linear_0", f"{block}.mlp.0")
    yield from _linear(model, f"{ct2}/ffn/linear_1", f"{block}.mlp.2")


F32_MATRICES = ("encoder.conv1.bias", "encoder.conv2.bias", "encoder.positional_embedding",
                "decoder.positional_embedding")


def _write_tensor(out: BinaryIO, name: str, data: np.ndarray) -> None:
    as_f32 = data.ndim < 2 or name in F32_MATRICES
    data = np.ascontiguousarray(data, dtype=np.float32 if as_f32 else np.float16)
    encoded = name.encode()
    out.write(struct.pack(f"<3i{data.ndim}i", data.ndim, len(encoded), GGML_F32 if as_f32 else GGML_F16,
                          *reversed(data.shape)))
    out.write(encoded)
    out.write(data.tobytes())
