"""The plugin manager: built-in plugins, then entry points of group ``lazyd``, then configured modules.

Registrations are resolved once, at start-up, into a :class:`Registry`; a misspelled hook or a duplicate
backend name stops start-up with a message that names it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from . import __version__, hookspecs
from .backend import DEVICE_PREFERENCE, Backend, DeviceSupport
from .exporters import ExporterSet

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "lazyd"
BUILTIN_PLUGINS: tuple[str, ...] = ("lazyd.plugins.text", "lazyd.plugins.word", "lazyd.plugins.subtitles",
                                     "lazyd.plugins.data")


class PluginError(RuntimeError):
    """A plugin cannot be loaded or conflicts with another; the message names it."""


@dataclass(frozen=True)
class BackendChoice:
    backend: Backend
    device: str
    reason: str


@dataclass(frozen=True)
class Registry:
    """What the plugins provide, resolved once."""

    plugin_manager: pluggy.PluginManager
    backends: dict[str, Backend] = field(default_factory=dict)
    backend_plugins: dict[str, str] = field(default_factory=dict)
    """Which plugin registered each backend."""
    exporters: ExporterSet = field(default_factory=ExporterSet)
    exporter_plugins: dict[str, str] = field(default_factory=dict)
    """Which plugin registered each exporter."""

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.plugin_manager.hook

    def choose_backend(self, configured: str = "auto", device: str = "auto",
                       cpu_backend: str = "faster-whisper") -> BackendChoice:
        """The backend to transcribe with here, the device it runs on, and why.

        A configured backend must be installed and able to run on the configured device (or, with
        ``device="auto"``, on some device here); otherwise start-up stops with the reasons. ``auto`` takes
        the backend with the best available device (CUDA, then Metal, then the CPU): faster-whisper on a
        CUDA box, whisper.cpp on Apple silicon. When only CPUs are left, ``cpu_backend`` wins the tie.
        """
        if configured != "auto":
            return self._configured(configured, device)
        usable = [(backend, support) for backend in self.backends.values() if (support := _device(backend, device))]
        if not usable:
            raise PluginError(f"no installed backend can run on {_where(device)}; installed: {self._names()}")
        backend, support = min(usable, key=lambda pair: (_device_rank(pair[1].device), pair[0].name != cpu_backend,
                                                          pair[0].name))
        return BackendChoice(backend, support.device, _reason(backend, support, cpu_backend, self.backends))

    def _configured(self, name: str, device: str) -> BackendChoice:
        backend = self.backends.get(name)
        if backend is None:
            raise PluginError(f"backend {name!r} is not installed; installed: {self._names()}")
        support = _device(backend, device)
        if support is None:
            reasons = "; ".join(f"{s.device}: {s.reason}" for s in backend.devices()
                                if device in ("auto", s.device))
            raise PluginError(f"backend {name!r} cannot run on {_where(device)} ({reasons or 'no such device'})")
        return BackendChoice(backend, support.device, "named in the configuration")

    def _names(self) -> str:
        return ", ".join(sorted(self.backends)) or "none"


def _device(backend: Backend, device: str) -> DeviceSupport | None:
    """The available device ``backend`` would run on: ``device``, or its best one for "auto"."""
    available = {support.device: support for support in backend.devices() if support.available}
    if device != "auto":
        return available.get(device)
    return next((available[best] for best in DEVICE_PREFERENCE if best in available), None)


def _where(device: str) -> str:
    return "this host" if device == "auto" else f"device {device!r} here"


def _reason(backend: Backend, support: DeviceSupport, cpu_backend: str, installed: dict[str, Backend]) -> str:
    if support.device != "cpu":
        return f"{support.device} is the best device here ({support.reason})"
    if backend.name == cpu_backend:
        return f"no GPU here; {cpu_backend} is the preferred CPU backend ([transcription] cpu_backend)"
    if cpu_backend in installed:
        return f"no GPU here, and the preferred CPU backend {cpu_backend} cannot run"
    return f"no GPU here, and the preferred CPU backend {cpu_backend} is not installed"


def _device_rank(device: str) -> int:
    return DEVICE_PREFERENCE.index(device) if device in DEVICE_PREFERENCE else len(DEVICE_PREFERENCE)


def get_plugin_manager(load_entrypoints: bool = True, modules: Iterable[str] = ()) -> pluggy.PluginManager:
    plugin_manager = pluggy.PluginManager("lazyd")
    plugin_manager.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        plugin_manager.register(importlib.import_module(name), name=name)
    if load_entrypoints:
        plugin_manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for name in modules:
        plugin_manager.register(_import_plugin(name), name=name)
    try:
        plugin_manager.check_pending()
    except pluggy.PluginValidationError as error:
        raise PluginError(f"plugin {plugin_manager.get_name(error.plugin)!r}: {error}") from None
    return plugin_manager


def _import_plugin(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise PluginError(f"cannot import plugin module {name!r} from [plugins] modules: {error}") from None


def load_registry(load_entrypoints: bool = True, modules: Iterable[str] = ()) -> Registry:
    plugin_manager = get_plugin_manager(load_entrypoints, modules)
    backends, backend_plugins = _collect(plugin_manager.hook.lazyd_register_backends, "backend")
    exporters, exporter_plugins = _collect(plugin_manager.hook.lazyd_register_exporters, "exporter")
    return Registry(plugin_manager, backends, backend_plugins, ExporterSet(exporters), exporter_plugins)


def _collect(hook: pluggy.HookCaller, kind: str) -> tuple[dict[str, Any], dict[str, str]]:
    """Each registered object by its ``name``, and the plugin that registered it; duplicates are errors."""
    found: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for impl in hook.get_hookimpls():
        for item in impl.function() or []:
            if item.name in found:
                raise PluginError(f"{kind} name {item.name!r} is registered twice: by plugin "
                                  f"{owners[item.name]!r} and by plugin {impl.plugin_name!r}")
            found[item.name] = item
            owners[item.name] = impl.plugin_name
    return found, owners


def plugin_origins(plugin_manager: pluggy.PluginManager) -> dict[str, str]:
    """Where each registered plugin comes from: lazyd itself, a distribution and its version, or a module."""
    origins = {name: "module from [plugins] modules" for name, _ in plugin_manager.list_name_plugin()}
    origins.update({name: f"built into lazyd {__version__}" for name in BUILTIN_PLUGINS})
    for plugin, dist in plugin_manager.list_plugin_distinfo():
        origins[plugin_manager.get_name(plugin)] = f"{dist.project_name} {dist.version}"
    return origins
