"""What this machine is, probed once at start-up, for choosing a backend and for reporting in ``/health``.

Accelerators are each backend's own business (CUDA through CTranslate2, Metal through whisper.cpp's
build): they come from :meth:`lazyd.backend.Backend.devices`. This module knows the rest: the operating
system, the architecture, the cores and the CPU features that decide how fast a CPU backend runs.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

CPU_FEATURES_OF_INTEREST = ("avx", "avx2", "avx512f", "fma", "f16c", "neon", "asimd")
"""Vector instruction sets the CPU backends' kernels use (x86: AVX*, FMA, F16C; ARM: NEON/ASIMD)."""


@dataclass(frozen=True)
class Host:
    system: str
    """``platform.system()``: "Linux", "Darwin", ..."""
    machine: str
    """``platform.machine()``: "x86_64", "arm64", "aarch64", ..."""
    cores: int
    cpu_features: tuple[str, ...]

    @property
    def apple_silicon(self) -> bool:
        return self.system == "Darwin" and self.machine == "arm64"

    def describe(self) -> str:
        kind = "Apple silicon" if self.apple_silicon else f"{self.system} on {self.machine}"
        features = f" ({', '.join(self.cpu_features)})" if self.cpu_features else ""
        return f"{kind}, {self.cores} core{'' if self.cores == 1 else 's'}{features}"


def probe_host() -> Host:
    system, machine = platform.system(), platform.machine()
    return Host(system, machine, os.cpu_count() or 1, _cpu_features(system, machine))


def _cpu_features(system: str, machine: str, cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    """The features of interest the CPU reports: Linux lists them in ``/proc/cpuinfo``; every arm64 CPU
    (Apple's included) has NEON."""
    if machine in ("arm64", "aarch64") and system != "Linux":
        return ("neon",)
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return tuple(feature for feature in CPU_FEATURES_OF_INTEREST if feature in flags)
