"""Configuration: defaults, the file, environment overrides, secrets from files, and clear errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lazyd.config import MASK, Config, ConfigError, InboxConfig, effective_config, load_config

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file(tmp_path):
    config = load_config(data_dir=tmp_path, env={})
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8000)
    assert config.database_url == f"sqlite:///{tmp_path / 'lazyd.sqlite3'}"
    assert config.auth.access_token_minutes == 30 and config.auth.refresh_token_days == 30


def test_the_sample_config_documents_every_key_with_its_default(tmp_path):
    """config.toml at the repository root loads, and it holds exactly the defaults of every key."""
    sample = REPO / "config.toml"
    loaded = load_config(sample, data_dir=tmp_path, env={})
    assert effective_config(loaded) == effective_config(Config(data_dir=str(tmp_path)))
    documented = tomllib.loads(sample.read_text())
    assert _keys(documented) == _keys(effective_config(Config())) - {"inbox"}


def test_the_sample_config_shows_an_inbox_entry_with_every_key_and_default(tmp_path):
    """[[inbox]] is an array of tables, so the sample shows a commented entry; uncommented, it loads."""
    lines = [line.removeprefix("# ") for line in (REPO / "config.toml").read_text().splitlines()
             if line.startswith("# ") and not line.startswith("# # ")]
    start = lines.index("[[inbox]]")
    entry = tomllib.loads("\n".join(lines[start:]))["inbox"][0]
    defaults = {field.name: field.default for field in dataclasses.fields(InboxConfig)}
    assert set(entry) == set(defaults)
    for name, default in defaults.items():
        if default is None:  # a job option: "not set" has no TOML spelling; the sample's example must load
            continue
        if default is not dataclasses.MISSING:
            assert entry[name] == (list(default) if isinstance(default, tuple) else default), name
    assert load_config(_write(tmp_path, "\n".join(lines[start:])), data_dir=tmp_path, env={}).inbox


def test_inbox_entries_are_read_and_their_required_keys_enforced(tmp_path):
    path = _write(tmp_path, '[[inbox]]\npath = "/in"\nuser = "alice"\noutbox = "/out"\nformats = ["txt", "srt"]\n'
                            '[[inbox]]\npath = "/in2"\nuser = "bob"\noutbox = "/out2"\n')
    first, second = load_config(path, data_dir=tmp_path, env={}).inbox
    assert (first.path, first.formats, second.formats, second.after) == ("/in", ("txt", "srt"), ("txt",), "move")
    missing = _write(tmp_path, '[[inbox]]\npath = "/in"\nuser = "alice"\n')
    with pytest.raises(ConfigError, match="'inbox.0.outbox' is required"):
        load_config(missing, data_dir=tmp_path, env={})
    unknown = _write(tmp_path, '[[inbox]]\npath = "/in"\nuser = "a"\noutbox = "/o"\ncolour = 1\n')
    with pytest.raises(ConfigError, match="unknown configuration key 'inbox.0.colour'"):
        load_config(unknown, data_dir=tmp_path, env={})


def _keys(table: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in table.items():
        keys |= _keys(value, f"{prefix}{name}.") if isinstance(value, dict) else {prefix + name}
    return keys


def test_file_values_are_read(tmp_path):
    path = _write(tmp_path, '[server]\nport = 9001\ntrusted_origins = ["https://a.example"]\n'
                            '[auth]\naccess_token_minutes = 5\n')
    config = load_config(path, data_dir=tmp_path, env={})
    assert config.server.port == 9001
    assert config.server.trusted_origins == ("https://a.example",)
    assert config.auth.access_token_minutes == 5


def test_environment_overrides_the_file(tmp_path):
    path = _write(tmp_path, "[server]\nport = 9001\n")
    env = {"LAZYD_SERVER__PORT": "9002", "LAZYD_AUTH__OPEN_REGISTRATION": "false",
           "LAZYD_SERVER__TRUSTED_ORIGINS": "https://a.example, https://b.example"}
    config = load_config(path, data_dir=tmp_path, env=env)
    assert config.server.port == 9002
    assert config.auth.open_registration is False
    assert config.server.trusted_origins == ("https://a.example", "https://b.example")


def test_data_dir_precedence_is_option_then_environment_then_file(tmp_path):
    path = _write(tmp_path, f'data_dir = "{tmp_path / "from-file"}"\n')
    assert load_config(path, env={}).data_dir == str(tmp_path / "from-file")
    env = {"LAZYD_DATA_DIR": str(tmp_path / "from-env")}
    assert load_config(path, env=env).data_dir == str(tmp_path / "from-env")
    assert load_config(path, data_dir=tmp_path / "from-option", env=env).data_dir == str(tmp_path / "from-option")


def test_the_config_file_can_come_from_the_environment(tmp_path):
    path = _write(tmp_path, "[server]\nport = 9100\n")
    assert load_config(data_dir=tmp_path, env={"LAZYD_CONFIG": str(path)}).server.port == 9100


def test_secrets_can_come_from_files(tmp_path):
    secret_file = tmp_path / "admin"
    secret_file.write_text("from-a-file\n")
    path = _write(tmp_path, f'[auth]\nadmin_token_file = "{secret_file}"\n')
    assert load_config(path, data_dir=tmp_path, env={}).auth.admin_token == "from-a-file"
    env = {"LAZYD_AUTH__WORKER_TOKEN_FILE": str(secret_file)}
    assert load_config(data_dir=tmp_path, env=env).auth.worker_token == "from-a-file"


@pytest.mark.parametrize("text, message", [
    ("[server]\nprot = 1\n", "unknown configuration key 'server.prot'"),
    ("colour = 1\n", "unknown configuration key 'colour'"),
    ('[server]\nport = "eighty"\n', "'server.port' must be an integer"),
    ("[server]\nport = true\n", "'server.port' must be an integer"),
    ("[auth]\nopen_registration = 1\n", "'auth.open_registration' must be a boolean"),
    ("server = 3\n", "'server' must be a table"),
    ('[server]\ntrusted_origins = [1]\n', "'server.trusted_origins' must be a string"),
    ("[server\n", "is not valid TOML"),
    ('[auth]\nadmin_token_file = "/nonexistent/secret"\n', "cannot read 'auth.admin_token_file'"),
])
def test_bad_files_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(_write(tmp_path, text), data_dir=tmp_path, env={})


@pytest.mark.parametrize("env, message", [
    ({"LAZYD_SERVER__PROT": "1"}, "unknown environment variable LAZYD_SERVER__PROT"),
    ({"LAZYD_SERVER__PORT": "eighty"}, "'server.port' must be an integer"),
    ({"LAZYD_AUTH__OPEN_REGISTRATION": "maybe"}, "'auth.open_registration' must be a boolean"),
])
def test_bad_environment_names_the_key(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(data_dir=tmp_path, env=env)


def test_a_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})


def test_effective_config_masks_secrets_and_database_passwords(tmp_path):
    path = _write(tmp_path, '[auth]\njwt_secret = "k" \nadmin_token = "t0ken"\n'
                            '[database]\nurl = "postgresql://lazyd:pw@db.example/lazyd"\n')
    shown = effective_config(load_config(path, data_dir=tmp_path, env={}))
    assert shown["auth"]["jwt_secret"] == MASK and shown["auth"]["admin_token"] == MASK
    assert shown["auth"]["worker_token"] == ""
    assert shown["database"]["url"] == f"postgresql://lazyd:{MASK}@db.example/lazyd"


def test_check_config_prints_the_masked_configuration(tmp_path):
    path = _write(tmp_path, '[auth]\nadmin_token = "very-secret-admin"\n')
    result = subprocess.run([sys.executable, "-m", "lazyd", "check-config", "--config", str(path),
                             "--data-dir", str(tmp_path)], capture_output=True, text=True, check=True)
    shown = json.loads(result.stdout)
    assert shown["auth"]["admin_token"] == MASK
    assert "very-secret-admin" not in result.stdout + result.stderr


def test_check_config_fails_naming_the_key(tmp_path):
    path = _write(tmp_path, "[server]\nprot = 1\n")
    result = subprocess.run([sys.executable, "-m", "lazyd", "check-config", "--config", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "server.prot" in result.stderr
