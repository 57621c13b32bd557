"""Config loading: defaults, TOML, environment overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from switch.config import ConfigError, describe, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "switch.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_environment():
    """If there is no file and no override, then every key has its documented default."""
    config = load_config(None, environ={})
    assert config.terminal.port == 8583
    assert config.metrics.port == 9100
    assert config.database.url == ""


def test_file_values_are_used(tmp_path):
    """If the file sets a value, then the config carries it."""
    config = load_config(write(tmp_path, "[terminal]\nport = 9999\nread_timeout_s = 2.5\n"), environ={})
    assert config.terminal.port == 9999
    assert config.terminal.read_timeout_s == 2.5


def test_integer_is_accepted_for_a_float_key(tmp_path):
    """If a seconds value is written as an integer, then it is accepted as a float."""
    config = load_config(write(tmp_path, "[switch]\ndrain_timeout_s = 3\n"), environ={})
    assert config.switch.drain_timeout_s == 3.0


def test_environment_overrides_file(tmp_path):
    """If SWITCH_TERMINAL_PORT is set, then it wins over the file."""
    path = write(tmp_path, "[terminal]\nport = 9999\n")
    config = load_config(path, environ={"SWITCH_TERMINAL_PORT": "7000"})
    assert config.terminal.port == 7000


def test_database_url_from_environment():
    """If SWITCH_DATABASE_URL is set, then the database section uses it."""
    config = load_config(None, environ={"SWITCH_DATABASE_URL": "postgresql://u@db.example/x"})
    assert config.database.url == "postgresql://u@db.example/x"


def test_wrong_type_names_the_key(tmp_path):
    """If a key has the wrong type, then the error names the key and the expected form."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[terminal]\nport = "eighty"\n'), environ={})
    assert "terminal.port" in str(err.value)
    assert "integer" in str(err.value)


def test_bool_is_not_an_integer(tmp_path):
    """If an integer key is given true, then it is rejected rather than read as 1."""
    with pytest.raises(ConfigError, match=r"database\.pool_size_max"):
        load_config(write(tmp_path, "[database]\npool_size_max = true\n"), environ={})


def test_unknown_key_names_the_key_and_suggests(tmp_path):
    """If a key is misspelt, then the error names it and suggests the known one."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[terminal]\nread_timout_s = 5\n"), environ={})
    assert "terminal.read_timout_s" in str(err.value)
    assert "read_timeout_s" in str(err.value)


def test_unknown_section_is_rejected(tmp_path):
    """If a section is unknown, then the error names it."""
    with pytest.raises(ConfigError, match="unknown config key termnial"):
        load_config(write(tmp_path, "[termnial]\nport = 1\n"), environ={})


def test_unknown_environment_override_is_rejected():
    """If a SWITCH_ variable matches no key, then the error names the variable."""
    with pytest.raises(ConfigError, match="SWITCH_TERMINAL_PROT"):
        load_config(None, environ={"SWITCH_TERMINAL_PROT": "1"})


def test_bad_environment_value_names_key_and_variable():
    """If an override cannot be parsed, then the error names the key and the variable."""
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={"SWITCH_METRICS_PORT": "nine"})
    assert "metrics.port" in str(err.value)
    assert "SWITCH_METRICS_PORT" in str(err.value)


def test_out_of_range_port_is_rejected():
    """If a port is above 65535, then the error says what range is expected."""
    with pytest.raises(ConfigError, match=r"terminal\.port: expected a TCP port"):
        load_config(None, environ={"SWITCH_TERMINAL_PORT": "70000"})


def test_non_positive_timeout_is_rejected(tmp_path):
    """If a timeout is zero, then it is rejected with the key named."""
    with pytest.raises(ConfigError, match=r"terminal\.read_timeout_s"):
        load_config(write(tmp_path, "[terminal]\nread_timeout_s = 0\n"), environ={})


def test_enum_value_is_checked():
    """If log.level is not one of the levels, then the error lists the allowed values."""
    with pytest.raises(ConfigError, match="one of 'debug', 'info'"):
        load_config(None, environ={"SWITCH_LOG_LEVEL": "loud"})


def test_boolean_from_environment():
    """If an override says false, then the boolean key is False."""
    assert load_config(None, environ={"SWITCH_METRICS_ENABLED": "false"}).metrics.enabled is False


def test_invalid_toml_is_reported(tmp_path):
    """If the file is not TOML, then the error says so and names the file."""
    path = write(tmp_path, "[terminal\nport=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, environ={})


def test_missing_file_is_reported(tmp_path):
    """If the named file does not exist, then the error names it."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml", environ={})


def test_pool_min_above_max_is_rejected():
    """If pool_size_min exceeds pool_size_max, then the start fails naming the key."""
    with pytest.raises(ConfigError, match=r"database\.pool_size_min"):
        load_config(
            None, environ={"SWITCH_DATABASE_POOL_SIZE_MIN": "20", "SWITCH_DATABASE_POOL_SIZE_MAX": "5"}
        )


def test_config_file_from_environment(tmp_path):
    """If SWITCH_CONFIG names a file, then that file is read."""
    path = write(tmp_path, "[metrics]\nport = 9200\n")
    assert load_config(None, environ={"SWITCH_CONFIG": str(path)}).metrics.port == 9200


def test_example_config_is_valid():
    """If the committed example switch.toml is loaded, then it validates."""
    example = Path(__file__).resolve().parents[2] / "switch.toml"
    load_config(example, environ={})


def test_every_timeout_and_limit_carries_a_unit():
    """If a key holds a quantity (timeout, interval, size, count), then its name ends in a unit or bound."""
    not_quantities = {"port", "header_length"}  # an address and a wire-format constant, not limits
    for key, _env, default, _doc in describe():
        leaf = key.rsplit(".", 1)[1]
        if type(default) in (int, float) and leaf not in not_quantities:
            assert leaf.endswith(("_s", "_ms", "_max", "_min")), key


def test_every_key_is_documented():
    """If a key exists in the code, then docs/configuration.md and switch.toml both mention it."""
    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "configuration.md").read_text()
    example = (root / "switch.toml").read_text()
    for key, env, _default, _doc in describe():
        assert f"`{key}`" in doc and f"`{env}`" in doc, key
        assert f"\n{key.split('.', 1)[1]} =" in example, key
