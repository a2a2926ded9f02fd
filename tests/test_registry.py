"""The plugin manager: entry points and configured modules, misspelled hooks, duplicate backend names."""

from __future__ import annotations

import sys
import types

import pytest

from lazyd import Backend, DeviceSupport, hookimpl
from lazyd.registry import PluginError, load_registry


class _Named(Backend):
    def __init__(self, name: str, devices: list[DeviceSupport]) -> None:
        self.name = name
        self._devices = devices

    def devices(self) -> list[DeviceSupport]:
        return self._devices

    def load(self, spec):
        raise NotImplementedError


def _plugin_module(monkeypatch, name: str, **hooks) -> str:
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    monkeypatch.setitem(sys.modules, name, module)
    return name


def _backends(*backends: Backend):
    return lambda: list(backends)


def test_installed_entry_points_and_configured_modules_are_loaded(monkeypatch):
    extra = _plugin_module(monkeypatch, "extra_plugin",
                           lazyd_register_backends=_backends(_Named("extra", [DeviceSupport("cpu", True, "")])))
    registry = load_registry(modules=[extra])
    assert {"faster-whisper", "extra"} <= set(registry.backends)


def test_a_duplicate_backend_name_stops_start_up_naming_both_plugins(monkeypatch):
    first = _plugin_module(monkeypatch, "first_plugin",
                           lazyd_register_backends=_backends(_Named("twin", [DeviceSupport("cpu", True, "")])))
    second = _plugin_module(monkeypatch, "second_plugin",
                            lazyd_register_backends=_backends(_Named("twin", [DeviceSupport("cpu", True, "")])))
    with pytest.raises(PluginError, match="'twin' is registered twice.*first_plugin.*second_plugin"):
        load_registry(load_entrypoints=False, modules=[first, second])


def test_a_misspelled_hook_stops_start_up(monkeypatch):
    module = types.ModuleType("typo_plugin")
    module.lazyd_register_backend = hookimpl(lambda: [])
    monkeypatch.setitem(sys.modules, "typo_plugin", module)
    with pytest.raises(PluginError, match="typo_plugin.*lazyd_register_backend"):
        load_registry(load_entrypoints=False, modules=["typo_plugin"])


def test_an_unimportable_plugin_module_is_named():
    with pytest.raises(PluginError, match="no_such_plugin_module"):
        load_registry(load_entrypoints=False, modules=["no_such_plugin_module"])


def test_auto_prefers_the_backend_with_the_best_available_device(monkeypatch):
    cpu_only = _Named("cpuonly", [DeviceSupport("cpu", True, "")])
    gpu = _Named("gpu", [DeviceSupport("cuda", True, "a GPU"), DeviceSupport("cpu", True, "")])
    unusable = _Named("nothing", [DeviceSupport("metal", False, "not a Mac")])
    name = _plugin_module(monkeypatch, "many", lazyd_register_backends=_backends(cpu_only, unusable, gpu))
    registry = load_registry(load_entrypoints=False, modules=[name])
    choice = registry.choose_backend()
    assert (choice.backend.name, choice.device) == ("gpu", "cuda")
    assert "cuda" in choice.reason
    named = registry.choose_backend("cpuonly")
    assert (named.backend.name, named.device, named.reason) == ("cpuonly", "cpu", "named in the configuration")


def test_a_configured_backend_that_is_not_installed_is_an_error():
    registry = load_registry(load_entrypoints=False)
    with pytest.raises(PluginError, match="'whisper-cpp' is not installed"):
        registry.choose_backend("whisper-cpp")
    with pytest.raises(PluginError, match="no installed backend"):
        registry.choose_backend()


def test_hook_lazyd_register_backends(monkeypatch):
    backend = _Named("mine", [DeviceSupport("cpu", True, "")])
    name = _plugin_module(monkeypatch, "backend_plugin", lazyd_register_backends=_backends(backend))
    registry = load_registry(load_entrypoints=False, modules=[name])
    assert registry.backends["mine"] is backend
    assert registry.backend_plugins["mine"] == "backend_plugin"


def test_hook_lazyd_register_exporters(monkeypatch):
    from lazyd.exporters import ExportOptions, Exporter, Transcript

    class Shout(Exporter):
        name, media_type, suffix = "shout", "text/plain", "txt"

        def render(self, transcript: Transcript, options: ExportOptions) -> bytes:
            return b"!"

    name = _plugin_module(monkeypatch, "shout_plugin", lazyd_register_exporters=lambda: [Shout()])
    registry = load_registry(load_entrypoints=False, modules=[name])
    assert isinstance(registry.exporters.get("shout"), Shout)
    assert registry.exporter_plugins["shout"] == "shout_plugin"
    assert {"txt", "docx", "srt", "vtt", "json", "md"} <= set(registry.exporters.names())


def test_an_exporter_name_taken_by_a_built_in_stops_start_up(monkeypatch):
    from lazyd.plugins.text import TextExporter

    name = _plugin_module(monkeypatch, "clash_plugin", lazyd_register_exporters=lambda: [TextExporter()])
    with pytest.raises(PluginError, match="exporter name 'txt' is registered twice"):
        load_registry(load_entrypoints=False, modules=[name])


def test_the_worker_decodes_a_chunk_per_core_at_once_unless_told_otherwise():
    import dataclasses
    import os

    from lazyd.config import Config, SchedulerConfig, TranscriptionConfig
    from lazyd.jobs.backend_setup import MAX_AUTO_PARALLEL, model_spec
    from lazyd.registry import BackendChoice

    cpu = BackendChoice(_Named("cpuonly", [DeviceSupport("cpu", True, "")]), "cpu", "test")
    default = model_spec(Config(data_dir="/tmp/x"), cpu)
    assert default.parallel == max(1, min(MAX_AUTO_PARALLEL, os.cpu_count() or 1))
    assert default.cpu_threads == 0  # the backend shares the cores among the decodes
    assert default.models_dir == "/tmp/x/models" and default.device == "cpu"
    two_slots = dataclasses.replace(Config(data_dir="/tmp/x"), scheduler=SchedulerConfig(workers=2))
    assert model_spec(two_slots, cpu).parallel == max(1, min(MAX_AUTO_PARALLEL, (os.cpu_count() or 1) // 2))
    configured = dataclasses.replace(Config(data_dir="/tmp/x"),
                                     transcription=TranscriptionConfig(cpu_threads=3, parallel=5))
    assert (model_spec(configured, cpu).cpu_threads, model_spec(configured, cpu).parallel) == (3, 5)
    gpu = BackendChoice(_Named("gpu", [DeviceSupport("cuda", True, "")]), "cuda", "test")
    assert model_spec(Config(data_dir="/tmp/x"), gpu).parallel == 1