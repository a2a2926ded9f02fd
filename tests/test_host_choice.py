"""Which backend lazyd transcribes with, on simulated hosts: the real installed plugins (faster-whisper and
whisper.cpp) asked what they can run on, with the operating system, the architecture and CTranslate2's
CUDA count made up."""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Callable
from pathlib import Path

import pytest

from lazyd.config import Config
from lazyd.daemon import Daemon
from lazyd.host import Host, _cpu_features, probe_host
from lazyd.registry import PluginError, Registry, load_registry


def simulate(monkeypatch: pytest.MonkeyPatch, system: str, machine: str, cuda_devices: int) -> Registry:
    import ctranslate2

    monkeypatch.setattr(platform, "system", lambda: system)
    monkeypatch.setattr(platform, "machine", lambda: machine)
    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", lambda: cuda_devices)
    return load_registry()


def test_a_cuda_box_transcribes_with_faster_whisper_on_the_gpu(monkeypatch):
    choice = simulate(monkeypatch, "Linux", "x86_64", cuda_devices=1).choose_backend()
    assert (choice.backend.name, choice.device) == ("faster-whisper", "cuda")
    assert choice.reason == "cuda is the best device here (ctranslate2 sees 1 CUDA device)"


def test_apple_silicon_transcribes_with_whisper_cpp_on_metal(monkeypatch):
    choice = simulate(monkeypatch, "Darwin", "arm64", cuda_devices=0).choose_backend()
    assert (choice.backend.name, choice.device) == ("whisper.cpp", "metal")
    assert "built with Metal" in choice.reason


def test_a_plain_cpu_takes_the_preferred_cpu_backend(monkeypatch):
    registry = simulate(monkeypatch, "Linux", "x86_64", cuda_devices=0)
    default = registry.choose_backend()
    assert (default.backend.name, default.device) == ("faster-whisper", "cpu")
    assert "preferred CPU backend" in default.reason
    preferred = registry.choose_backend(cpu_backend="whisper.cpp")
    assert (preferred.backend.name, preferred.device) == ("whisper.cpp", "cpu")
    missing = registry.choose_backend(cpu_backend="no-such-backend")
    assert missing.device == "cpu" and "no-such-backend is not installed" in missing.reason


def test_a_configured_backend_or_device_that_cannot_run_here_is_refused_with_the_reason(monkeypatch):
    registry = simulate(monkeypatch, "Linux", "x86_64", cuda_devices=0)
    with pytest.raises(PluginError, match=r"'whisper.cpp' cannot run on device 'cuda' here \(no such device\)"):
        registry.choose_backend("whisper.cpp", "cuda")
    with pytest.raises(PluginError, match="'faster-whisper' cannot run on device 'cuda' here.*sees 0 CUDA"):
        registry.choose_backend("faster-whisper", "cuda")
    with pytest.raises(PluginError, match="'whisper.cpp' cannot run on device 'metal'.*Apple silicon"):
        registry.choose_backend("whisper.cpp", "metal")
    named = registry.choose_backend("whisper.cpp", "cpu")
    assert (named.backend.name, named.device, named.reason) == ("whisper.cpp", "cpu", "named in the configuration")


def test_auto_with_a_device_no_backend_has_is_refused(monkeypatch):
    registry = simulate(monkeypatch, "Linux", "x86_64", cuda_devices=0)
    with pytest.raises(PluginError, match="no installed backend can run on device 'metal' here"):
        registry.choose_backend("auto", "metal")


async def test_a_configured_backend_that_cannot_run_stops_start_up(monkeypatch, make_config: Callable[..., Config]):
    registry = simulate(monkeypatch, "Linux", "x86_64", cuda_devices=0)
    config = make_config(sections={"scheduler": {"enabled": True}})
    config = dataclasses.replace(config, transcription=dataclasses.replace(config.transcription,
                                                                           backend="whisper.cpp", device="metal"))
    with pytest.raises(PluginError, match="cannot run on device 'metal'"):
        async with Daemon(config, registry):
            pass


def test_this_host_is_probed() -> None:
    host = probe_host()
    assert (host.system, host.machine, host.cores) == (platform.system(), platform.machine(), os.cpu_count())
    assert f"{host.cores} core" in host.describe()


@pytest.mark.parametrize(("system", "machine", "cpuinfo", "expected"), [
    ("Linux", "x86_64", "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma f16c\n\nprocessor\t: 1\n"
                        "flags\t\t: fpu sse2 avx avx2 fma f16c\n", ("avx", "avx2", "fma", "f16c")),
    ("Linux", "aarch64", "processor\t: 0\nFeatures\t: fp asimd evtstrm\n", ("asimd",)),
    ("Darwin", "arm64", None, ("neon",)),
    ("Linux", "x86_64", None, ()),
])
def test_cpu_features_are_read_where_the_system_lists_them(tmp_path: Path, system, machine, cpuinfo, expected):
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo)
    assert _cpu_features(system, machine, path) == expected


def test_a_host_describes_itself() -> None:
    assert Host("Darwin", "arm64", 8, ("neon",)).describe() == "Apple silicon, 8 cores (neon)"
    assert Host("Linux", "x86_64", 1, ()).describe() == "Linux on x86_64, 1 core"
