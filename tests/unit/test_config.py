"""Config loading: defaults, TOML, environment overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from switch.config import ConfigError, demo_network_configs, describe, load_config


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
    # An address, a wire-format constant and a number of processes: not timeouts or limits.
    not_quantities = {"port", "header_length", "workers"}
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
        leaf = key.split(".", 1)[1]
        if key.startswith("networks."):  # commented out in the example: it configures no network
            leaf = "# " + key.rsplit(".", 1)[1]
        assert f"\n{leaf} =" in example, key


# -- [networks.<name>] ----------------------------------------------------------------------------------

VISA_TABLE = """
[networks.visa]
endpoints = ["10.0.0.5:9583", "10.0.0.6:9583"]
acquirer_id = "990001"
network_id = "400001"
network_station_id = "400001"
our_station_id = "990001"
deadline_ms = 3000
"""


def test_no_network_is_configured_by_default():
    """If neither the file nor demo mode names a network, then no network is configured."""
    assert load_config(None, environ={}).networks == {}


def test_demo_mode_configures_the_three_demo_networks():
    """If demo mode runs without [networks] tables, then visa, cups and shetab point at netsim's ports."""
    networks = load_config(None, environ={}, demo=True).networks
    assert sorted(networks) == ["cups", "shetab", "visa"]
    assert networks["cups"].endpoints == ("127.0.0.1:9584",)
    assert networks["cups"].forwarding_id == "99000100001"
    assert networks["visa"].network_station_id == "400001"


def test_demo_network_configs_are_what_demo_mode_loads():
    """If the app asks for the demo networks, then it gets what demo mode configures."""
    assert demo_network_configs() == load_config(None, environ={}, demo=True).networks


def test_network_table_is_read(tmp_path):
    """If the file has a [networks.visa] table, then its values are used and the dialect is the name."""
    visa = load_config(write(tmp_path, VISA_TABLE), environ={}).networks["visa"]
    assert visa.addresses == (("10.0.0.5", 9583), ("10.0.0.6", 9583))
    assert (visa.dialect, visa.deadline_ms, visa.deadline_s) == ("visa", 3000, 3.0)


def test_forwarding_id_defaults_to_acquirer_id(tmp_path):
    """If a network has no forwarding_id, then it is the acquirer ID."""
    assert load_config(write(tmp_path, VISA_TABLE), environ={}).networks["visa"].forwarding_id == "990001"


def test_file_networks_replace_the_demo_networks(tmp_path):
    """If demo mode runs with [networks] tables in the file, then only those networks are configured."""
    assert list(load_config(write(tmp_path, VISA_TABLE), environ={}, demo=True).networks) == ["visa"]


def test_network_override_from_environment(tmp_path):
    """If SWITCH_NETWORKS_VISA_DEADLINE_MS is set, then it wins over the file."""
    config = load_config(write(tmp_path, VISA_TABLE), environ={"SWITCH_NETWORKS_VISA_DEADLINE_MS": "750"})
    assert config.networks["visa"].deadline_ms == 750


def test_endpoints_override_is_comma_separated():
    """If endpoints are overridden, then the variable lists them separated by commas, primary first."""
    env = {"SWITCH_NETWORKS_SHETAB_ENDPOINTS": "10.1.1.1:9585, 10.1.1.2:9595"}
    config = load_config(None, environ=env, demo=True)
    assert config.networks["shetab"].endpoints == ("10.1.1.1:9585", "10.1.1.2:9595")


def test_override_of_an_unconfigured_network_is_rejected():
    """If an override names a network that is not configured, then the error names the variable."""
    with pytest.raises(ConfigError, match="SWITCH_NETWORKS_VIZA_DEADLINE_MS"):
        load_config(None, environ={"SWITCH_NETWORKS_VIZA_DEADLINE_MS": "1"}, demo=True)


def test_override_of_an_unknown_network_key_suggests():
    """If an override misspells a network key, then the error suggests the variable meant."""
    with pytest.raises(ConfigError, match="did you mean SWITCH_NETWORKS_VISA_DEADLINE_MS"):
        load_config(None, environ={"SWITCH_NETWORKS_VISA_DEADLNE_MS": "1"}, demo=True)


def test_unknown_network_key_names_the_key(tmp_path):
    """If a network table has a misspelt key, then the error names networks.<name>.<key>."""
    with pytest.raises(ConfigError, match=r"unknown config key networks\.visa\.echo_idle_ms"):
        load_config(write(tmp_path, VISA_TABLE + "echo_idle_ms = 5\n"), environ={})


def test_bad_endpoint_is_rejected(tmp_path):
    """If an endpoint lacks a port, then the error names networks.<name>.endpoints."""
    text = VISA_TABLE.replace('"10.0.0.6:9583"', '"10.0.0.6"')
    with pytest.raises(ConfigError, match=r"networks\.visa\.endpoints: expected host:port"):
        load_config(write(tmp_path, text), environ={})


def test_endpoints_must_be_a_list(tmp_path):
    """If endpoints is a single string in the file, then it is rejected as not a list."""
    text = VISA_TABLE.replace('["10.0.0.5:9583", "10.0.0.6:9583"]', '"10.0.0.5:9583"')
    with pytest.raises(ConfigError, match=r"networks\.visa\.endpoints: expected a list of strings"):
        load_config(write(tmp_path, text), environ={})


def test_match_fields_must_be_field_numbers(tmp_path):
    """If match_fields lists field 65 (the tertiary bitmap bit), then it is rejected."""
    with pytest.raises(ConfigError, match=r"networks\.visa\.match_fields"):
        load_config(write(tmp_path, VISA_TABLE + "match_fields = [11, 65]\n"), environ={})


def test_enabled_network_needs_endpoints(tmp_path):
    """If an enabled network has no endpoints, then the start fails naming the key."""
    text = VISA_TABLE.replace('endpoints = ["10.0.0.5:9583", "10.0.0.6:9583"]', "")
    with pytest.raises(ConfigError, match=r"networks\.visa\.endpoints: required"):
        load_config(write(tmp_path, text), environ={})


def test_disabled_network_may_be_incomplete(tmp_path):
    """If a network is disabled, then it may lack endpoints and IDs."""
    config = load_config(write(tmp_path, "[networks.visa]\nenabled = false\n"), environ={})
    assert config.networks["visa"].enabled is False


def test_network_dialect_must_be_a_network_dialect(tmp_path):
    """If a network names the terminal dialect, then it is rejected with the network dialects listed."""
    with pytest.raises(ConfigError, match=r"networks\.visa\.dialect: expected one of visa, cups, shetab"):
        load_config(write(tmp_path, VISA_TABLE + 'dialect = "terminal"\n'), environ={})


def test_network_name_must_be_letters_and_digits(tmp_path):
    """If a network name has an underscore, then it is rejected (it would make overrides ambiguous)."""
    with pytest.raises(ConfigError, match=r"networks\.my_net: expected a network name"):
        load_config(write(tmp_path, VISA_TABLE.replace("networks.visa", "networks.my_net")), environ={})


def test_backoff_initial_above_max_is_rejected(tmp_path):
    """If the first reconnect delay exceeds the maximum, then the start fails naming the key."""
    text = VISA_TABLE + "reconnect_backoff_initial_s = 90\n"
    with pytest.raises(ConfigError, match=r"networks\.visa\.reconnect_backoff_initial_s"):
        load_config(write(tmp_path, text), environ={})


def test_station_id_must_be_six_digits(tmp_path):
    """If a Visa station ID is not six digits, then the error names the key."""
    text = VISA_TABLE.replace('our_station_id = "990001"', 'our_station_id = "99001"')
    with pytest.raises(ConfigError, match=r"networks\.visa\.our_station_id: expected 6 digits"):
        load_config(write(tmp_path, text), environ={})


# -- interbank additions: currencies, [saf], demo mode from the command line ---------------------------------


def test_demo_networks_settle_their_demo_currencies():
    """If demo mode configures the networks, then each settles the currencies netsim's cards use."""
    networks = load_config(None, environ={}, demo=True).networks
    assert networks["visa"].currencies == (840, 978)
    assert networks["shetab"].currencies == (364,)


def test_network_currencies_from_the_environment():
    """If SWITCH_NETWORKS_<NAME>_CURRENCIES is a comma-separated list, then it replaces the currencies."""
    env = {"SWITCH_NETWORKS_CUPS_CURRENCIES": "156"}
    assert load_config(None, environ=env, demo=True).networks["cups"].currencies == (156,)


def test_network_currency_out_of_range_names_the_key(tmp_path):
    """If a currency is not an ISO 4217 numeric code, then the error names networks.<name>.currencies."""
    with pytest.raises(ConfigError, match=r"networks\.visa\.currencies"):
        load_config(write(tmp_path, VISA_TABLE + "currencies = [840, 1000]\n"), environ={})


def test_saf_backoff_initial_above_max_is_refused():
    """If the SAF backoff starts above its maximum, then the error names saf.backoff_initial_s."""
    env = {"SWITCH_SAF_BACKOFF_INITIAL_S": "10", "SWITCH_SAF_BACKOFF_MAX_S": "5"}
    with pytest.raises(ConfigError, match=r"saf\.backoff_initial_s"):
        load_config(None, environ=env)


def test_switchd_demo_flag_lets_network_overrides_apply(monkeypatch, tmp_path):
    """If `switchd run --demo` is given a SWITCH_NETWORKS_* override, then it applies to the demo network."""
    from switch.cli.common import load_config_or_exit

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWITCH_CONFIG", raising=False)
    monkeypatch.setenv("SWITCH_NETWORKS_VISA_DEADLINE_MS", "1234")
    assert load_config_or_exit(None, demo=True).networks["visa"].deadline_ms == 1234
