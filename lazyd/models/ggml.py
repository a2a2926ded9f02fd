"""Checking a whisper.cpp ggml model file before whisper.cpp sees it.

whisper.cpp (through pywhispercpp) answers a truncated or foreign file with a context that crashes the
process at its first use, so a worker would die instead of reporting a bad model. :func:`read_ggml` walks
the file's layout (described in :mod:`lazyd.models.convert`) with seeks, never reading the weights, and
raises :class:`GgmlFileError` unless every tensor is whole and the file ends where the last one does.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .convert import GGML_MAGIC, Dimensions

TYPE_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
               10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292)}
"""ggml tensor types whisper.cpp models use: (values per block, bytes per block): f32, f16, the quantized
q4_0, q4_1, q5_0, q5_1, q8_0 and the k-quants q2_K to q8_K."""


class GgmlFileError(ValueError):
    """Not a whole whisper.cpp ggml model; the message says what is wrong."""


@dataclass(frozen=True)
class GgmlModel:
    dimensions: Dimensions
    ftype: int
    tensors: int

    @property
    def multilingual(self) -> bool:
        return self.dimensions.multilingual


def read_ggml(path: Path) -> GgmlModel:
    size = path.stat().st_size
    with path.open("rb") as stream:
        header = _ints(stream, 12, "the header")
        if header[0] != GGML_MAGIC:
            raise GgmlFileError(f"{path} is not a ggml model (it does not start with the ggml magic number)")
        rows, columns = _ints(stream, 2, "the mel filters")
        stream.seek(4 * rows * columns, os.SEEK_CUR)
        for _ in range(_ints(stream, 1, "the vocabulary")[0]):
            stream.seek(_ints(stream, 1, "the vocabulary")[0], os.SEEK_CUR)
        tensors = 0
        while stream.tell() < size:
            _skip_tensor(stream, path)
            tensors += 1
        if stream.tell() != size:
            raise GgmlFileError(f"{path} is truncated: its last tensor ends {stream.tell() - size} bytes past "
                                f"the end of the file")
    return GgmlModel(Dimensions(*header[1:11]), header[11], tensors)


def _skip_tensor(stream: BinaryIO, path: Path) -> None:
    rank, name_length, kind = _ints(stream, 3, "a tensor header")
    if not 1 <= rank <= 4 or kind not in TYPE_BLOCKS or not 0 < name_length < 256:
        raise GgmlFileError(f"{path} has a malformed tensor header at byte {stream.tell() - 12}")
    values = 1
    for dimension in _ints(stream, rank, "a tensor shape"):
        values *= dimension
    per_block, block_bytes = TYPE_BLOCKS[kind]
    stream.seek(name_length + -(-values // per_block) * block_bytes, os.SEEK_CUR)


def _ints(stream: BinaryIO, count: int, what: str) -> tuple[int, ...]:
    data = stream.read(4 * count)
    if len(data) != 4 * count:
        raise GgmlFileError(f"the file ends inside {what}")
    return struct.unpack(f"<{count}i", data)
