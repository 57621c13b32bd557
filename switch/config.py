"""Configuration: one TOML file plus environment overrides, validated once at start.

Why strict: a switch that silently ignores a misspelt `read_timout_s` runs with a default nobody chose.
Every key is declared here with its type; an unknown key, a wrong type or an out-of-range value fails the
start with a message that names the key and the expected form. Every timeout and limit carries its unit
in its name.

Environment overrides: `SWITCH_<SECTION>_<KEY>` in upper case, e.g. `SWITCH_DATABASE_URL`,
`SWITCH_TERMINAL_PORT`, `SWITCH_LOG_LEVEL`. `SWITCH_CONFIG` names the file. Any other variable that starts
with `SWITCH_` is an error, so a typo in an override is caught as surely as one in the file.

Interbank networks are tables under `[networks.<name>]`, one per network, overridden by
`SWITCH_NETWORKS_<NAME>_<KEY>` (e.g. `SWITCH_NETWORKS_VISA_DEADLINE_MS`). An override can only change a
network that exists (in the file, or the demo networks with `demo=True`), so a misspelt name fails too.
Network names are lower-case letters and digits: they appear in variable names, metric labels and
ledger account names, and without underscores the variable name splits into name and key one way only.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import specs
from specs import demo_networks
from switch.domain.business_day import business_day

__all__ = [
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "HsmConfig",
    "LedgerConfig",
    "LogConfig",
    "MetricsConfig",
    "NetworkConfig",
    "SafConfig",
    "SwitchConfig",
    "TerminalListenerConfig",
    "demo_network_configs",
    "load_config",
]

ENV_PREFIX = "SWITCH_"
ENV_CONFIG_FILE = "SWITCH_CONFIG"


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and what was expected."""


def _check_port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "a TCP port number 0-65535 (0 picks a free port)"


def _check_positive(value: float) -> str | None:
    return None if value > 0 else "a number greater than 0"


def _check_forwarded_keep(value: float) -> str | None:
    # A forwarded pre-authorization is held for 7 days (switch.pipeline.forward): its record must outlive
    # the hold, or its completion would find no original.
    return None if value >= 8 * 24 * 3600 else "at least 691200 (8 days)"


def _check_timezone(value: str) -> str | None:
    try:
        business_day(value)
    except ValueError as exc:
        return str(exc)
    return None


def _check_non_negative(value: float) -> str | None:
    return None if value >= 0 else "a number of 0 or more"


def _field(default: Any, *, check: Any = None, doc: str = "") -> Any:
    return dataclasses.field(default=default, metadata={"check": check, "doc": doc})


@dataclasses.dataclass(frozen=True, kw_only=True)
class SwitchConfig:
    node_name: str = _field("switch-1", doc="name of this switchd instance in logs and metrics")
    drain_timeout_s: float = _field(
        10.0, check=_check_non_negative, doc="on SIGTERM/SIGINT, how long in-flight work may finish"
    )
    var_dir: str = _field("var", doc="where runtime data lives (embedded PostgreSQL, HSM files)")
    business_timezone: str = _field(
        "UTC",
        check=_check_timezone,
        doc="the bank's time zone (IANA name): daily limits restart and the journal's business date turns "
        "at its midnight",
    )
    workers: int = _field(
        1,
        check=lambda v: None if 1 <= v <= 64 else "a whole number of processes from 1 to 64",
        doc="switchd processes sharing the terminal port (one core each); see docs/operations.md",
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    url: str = _field("", doc="PostgreSQL DSN; empty = start the embedded PostgreSQL under var_dir")
    pool_size_min: int = _field(2, check=_check_positive, doc="connections opened at start")
    pool_size_max: int = _field(10, check=_check_positive, doc="connections at most")
    connect_timeout_s: float = _field(10.0, check=_check_positive, doc="per connection attempt")
    statement_timeout_ms: int = _field(5000, check=_check_non_negative, doc="server-side; 0 = none")
    embedded_start_timeout_s: float = _field(30.0, check=_check_positive, doc="embedded server start limit")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = _field("info")
    format: Literal["auto", "json", "console"] = _field(
        "auto", doc="auto = console renderer on a terminal, JSON lines otherwise"
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetricsConfig:
    enabled: bool = _field(True)
    host: str = _field("127.0.0.1")
    port: int = _field(9100, check=_check_port)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TerminalListenerConfig:
    enabled: bool = _field(True)
    host: str = _field("127.0.0.1", doc="0.0.0.0 to accept terminals from other machines")
    port: int = _field(8583, check=_check_port)
    read_timeout_s: float = _field(300.0, check=_check_positive, doc="idle connection is closed after this")
    frame_bytes_max: int = _field(8192, check=_check_positive, doc="larger frames close the connection")
    connections_max: int = _field(10000, check=_check_positive, doc="further connections wait to be accepted")


@dataclasses.dataclass(frozen=True, kw_only=True)
class HsmConfig:
    mode: Literal["inprocess", "tcp"] = _field(
        "inprocess", doc="inprocess: the HSM library in switchd; tcp: hsmd"
    )
    lmk_file: str = _field(
        "", doc="inprocess: LMK file (passphrase in HSM_LMK_PASSPHRASE); empty is allowed only with --demo"
    )
    host: str = _field("127.0.0.1", doc="tcp: hsmd address")
    port: int = _field(1500, check=_check_port, doc="tcp: hsmd port")
    header_length: int = _field(4, check=_check_non_negative, doc="payShield message header length")
    timeout_s: float = _field(2.0, check=_check_positive, doc="tcp: limit of one HSM command")
    connections_max: int = _field(8, check=_check_positive, doc="tcp: connection pool size")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LedgerConfig:
    batch_size_max: int = _field(256, check=_check_positive, doc="transfers per group commit at most")
    hold_expiry_check_s: float = _field(
        60.0, check=_check_positive, doc="how often expired holds are released"
    )
    barred_keep_s: float = _field(
        30 * 24 * 3600.0,
        check=_check_positive,
        doc="how long the id of an original whose reversal came first stays barred (pruned by the hold sweep)",
    )
    forwarded_keep_s: float = _field(
        30 * 24 * 3600.0,
        check=_check_forwarded_keep,
        doc="how long a forwarded transaction's record is kept for its reversal or completion (pruned by the "
        "hold sweep; at least 8 days: a forwarded pre-authorization is held 7)",
    )


def _check_endpoints(value: tuple[str, ...]) -> str | None:
    for endpoint in value:
        if _split_endpoint(endpoint) is None:
            return f"host:port entries with a port 1-65535 (bad entry {endpoint!r})"
    return None


def _split_endpoint(endpoint: str) -> tuple[str, int] | None:
    host, sep, port = endpoint.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]:9583
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)


def _check_institution_id(value: str) -> str | None:
    ok = value == "" or (value.isascii() and value.isdigit() and len(value) <= 11)
    return None if ok else "up to 11 digits"


def _check_station_id(value: str) -> str | None:
    return None if value.isascii() and value.isdigit() and len(value) == 6 else "6 digits"


def _check_currencies(value: tuple[int, ...]) -> str | None:
    if len(set(value)) != len(value) or any(not 1 <= n <= 999 for n in value):
        return "a list of distinct ISO 4217 numeric currency codes 1-999"
    return None


def _check_match_fields(value: tuple[int, ...]) -> str | None:
    if not value or len(set(value)) != len(value) or any(not 2 <= n <= 128 or n == 65 for n in value):
        return "a non-empty list of distinct field numbers 2-128 (not 65)"
    return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """One interbank network's link (`[networks.<name>]`); docs/networks.md says how each key is used."""

    enabled: bool = _field(True, doc="connect to this network")
    dialect: str = _field("", doc="wire dialect (specs/<dialect>.py); empty = the network's name")
    endpoints: tuple[str, ...] = _field(
        (), check=_check_endpoints, doc="host:port list, primary first; the others are tried in order"
    )
    acquirer_id: str = _field("", check=_check_institution_id, doc="our acquirer ID on this network (F32)")
    forwarding_id: str = _field(
        "",
        check=_check_institution_id,
        doc="our forwarding ID (F33, CUPS header source); empty = acquirer_id",
    )
    network_id: str = _field("", check=_check_institution_id, doc="the network's institution ID (F100)")
    network_station_id: str = _field(
        "000000", check=_check_station_id, doc="Visa header: the network's station ID (destination)"
    )
    our_station_id: str = _field(
        "000000", check=_check_station_id, doc="Visa header: our station ID (source)"
    )
    deadline_ms: int = _field(
        5000, check=_check_positive, doc="a request unanswered this long times out (terminal gets 91)"
    )
    connect_timeout_s: float = _field(5.0, check=_check_positive, doc="limit of one TCP connect")
    echo_idle_s: float = _field(
        60.0, check=_check_positive, doc="an echo (301) is sent after this long without a frame received"
    )
    reconnect_backoff_initial_s: float = _field(
        1.0, check=_check_positive, doc="first reconnect delay; doubles per failure, with jitter"
    )
    reconnect_backoff_max_s: float = _field(60.0, check=_check_positive, doc="reconnect delay at most")
    pending_max: int = _field(
        1000, check=_check_positive, doc="requests awaiting an answer at most; more fail as unavailable"
    )
    key_grace_s: float = _field(
        300.0, check=_check_non_negative, doc="the previous ZPK stays accepted this long after a key exchange"
    )
    key_exchange_interval_s: float = _field(
        3600.0, check=_check_non_negative, doc="a new ZPK is asked for this often; 0 = only at sign-on"
    )
    frame_bytes_max: int = _field(8192, check=_check_positive, doc="larger frames close the connection")
    match_fields: tuple[int, ...] = _field(
        (11, 7, 32), check=_check_match_fields, doc="fields that pair a response with its request"
    )
    currencies: tuple[int, ...] = _field(
        (),
        check=_check_currencies,
        doc="currencies settled with this network (one settlement account each); others are refused 12",
    )
    key_reload_s: float = _field(
        30.0, check=_check_positive, doc="this process re-reads the network's keys when its copy is this old"
    )

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        """The endpoints as (host, port) pairs, primary first."""
        return tuple(address for e in self.endpoints if (address := _split_endpoint(e)) is not None)

    @property
    def deadline_s(self) -> float:
        return self.deadline_ms / 1000


@dataclasses.dataclass(frozen=True, kw_only=True)
class SafConfig:
    """The store-and-forward worker (`[saf]`): how reversals and advices are delivered to the networks."""

    request_timeout_s: float = _field(
        10.0, check=_check_positive, doc="one attempt waits this long for the 0430/0230"
    )
    poll_interval_s: float = _field(
        1.0, check=_check_positive, doc="the queue is looked at least this often (other processes' entries)"
    )
    backoff_initial_s: float = _field(
        5.0, check=_check_positive, doc="delay after the first unacknowledged attempt; doubles per attempt"
    )
    backoff_max_s: float = _field(300.0, check=_check_positive, doc="delay between attempts at most")
    reversal_lifetime_s: float = _field(
        259200.0, check=_check_positive, doc="an undelivered reversal expires (money at risk) after this"
    )
    advice_lifetime_s: float = _field(
        259200.0, check=_check_positive, doc="an undelivered advice expires after this"
    )
    lease_margin_s: float = _field(
        30.0, check=_check_positive, doc="a lease outlives its attempt by this much (several switchd)"
    )
    error_pause_s: float = _field(
        5.0, check=_check_positive, doc="after a failed pass (database down), wait this long"
    )
    finished_keep_s: float = _field(
        30 * 24 * 3600.0,
        check=_check_positive,
        doc="acknowledged and purged entries are deleted this long after they finished (expired ones are kept)",
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    switch: SwitchConfig = dataclasses.field(default_factory=SwitchConfig)
    database: DatabaseConfig = dataclasses.field(default_factory=DatabaseConfig)
    log: LogConfig = dataclasses.field(default_factory=LogConfig)
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    terminal: TerminalListenerConfig = dataclasses.field(default_factory=TerminalListenerConfig)
    hsm: HsmConfig = dataclasses.field(default_factory=HsmConfig)
    ledger: LedgerConfig = dataclasses.field(default_factory=LedgerConfig)
    saf: SafConfig = dataclasses.field(default_factory=SafConfig)
    # Network name -> its link; empty unless the file has [networks.<name>] tables (or demo=True).
    networks: Mapping[str, NetworkConfig] = dataclasses.field(default_factory=dict)

    @property
    def var_path(self) -> Path:
        return Path(self.switch.var_dir)


def _describe_type(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) is tuple:
        item = {int: "integers", str: "strings"}.get(get_args(tp)[0], "values")
        return f"a list of {item} (comma-separated in the environment)"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _coerce(key: str, tp: Any, value: Any, source: str) -> Any:
    """Check `value` against the declared type; strings from the environment are parsed first."""
    where = f" (from {source})" if source else ""
    from_env = bool(source) and isinstance(value, str)
    if get_origin(tp) is Literal:
        allowed = get_args(tp)
        if value in allowed:
            return value
        raise ConfigError(f"config key {key}: expected {_describe_type(tp)}, got {value!r}{where}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_env and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env:
            try:
                return int(value)
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_env:
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str and isinstance(value, str):
        return value
    elif get_origin(tp) is tuple:
        items = [part.strip() for part in value.split(",") if part.strip()] if from_env else value
        if isinstance(items, list):
            try:
                return tuple(_coerce(key, get_args(tp)[0], item, source) for item in items)
            except ConfigError:
                pass  # reported below for the list as a whole
    shown = type(value).__name__ if not from_env else repr(value)
    raise ConfigError(f"config key {key}: expected {_describe_type(tp)}, got {shown}{where}")


def _unknown(key: str, known: list[str]) -> ConfigError:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown config key {key}{hint}; known keys here: {', '.join(sorted(known))}")


def _build_section(name: str, cls: Any, raw: Mapping[str, Any], sources: Mapping[str, str]) -> Any:
    hints = get_type_hints(cls, include_extras=True)
    known = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        full = f"{name}.{key}"
        if key not in known:
            raise _unknown(full, known)
        coerced = _coerce(full, hints[key], value, sources.get(full, ""))
        check = next(f for f in dataclasses.fields(cls) if f.name == key).metadata.get("check")
        if check is not None:
            problem = check(coerced)
            if problem:
                where = f" (from {sources[full]})" if full in sources else ""
                raise ConfigError(f"config key {full}: expected {problem}, got {coerced!r}{where}")
        values[key] = coerced
    return cls(**values)


NETWORKS = "networks"
_ENV_NETWORKS = f"{ENV_PREFIX}{NETWORKS.upper()}_"
_NETWORK_NAME = re.compile(r"[a-z][a-z0-9]{0,31}")


def _sections() -> list[dataclasses.Field[Any]]:
    """The fixed sections (one table each); `networks` holds one table per network and is built apart."""
    return [f for f in dataclasses.fields(Config) if f.name != NETWORKS]


def env_keys() -> dict[str, str]:
    """Every environment variable name that overrides a key of a fixed section, mapped to its dotted key.

    Network keys are `SWITCH_NETWORKS_<NAME>_<KEY>` for each configured network (see the module doc).
    """
    names: dict[str, str] = {}
    for section in _sections():
        section_cls = get_type_hints(Config)[section.name]
        for f in dataclasses.fields(section_cls):
            names[f"{ENV_PREFIX}{section.name}_{f.name}".upper()] = f"{section.name}.{f.name}"
    return names


def _demo_network_tables() -> dict[str, dict[str, Any]]:
    """The demo networks of specs/demo_networks.py as raw [networks.<name>] tables (netsim on localhost)."""
    return {
        demo.name: {
            "dialect": demo.name,
            "endpoints": [f"127.0.0.1:{demo.port}"],
            "acquirer_id": demo.acquirer_id,
            "forwarding_id": demo.forwarding_id,
            "network_id": demo.network_id,
            "network_station_id": demo.station_id,
            "our_station_id": demo.our_station_id,
            "currencies": list(demo.currencies),
        }
        for demo in demo_networks.NETWORKS
    }


def demo_network_configs() -> dict[str, NetworkConfig]:
    """The three demo networks (visa, cups, shetab) as `switchd run --demo` uses them without [networks]."""
    return _build_networks(_demo_network_tables(), {})


def _network_dialects() -> list[str]:
    # A network dialect is one whose spec module carries the link tables (the terminal dialect has none).
    return [
        name
        for name in specs.NAMES
        if hasattr(importlib.import_module(f"specs.{name}"), "NETWORK_MANAGEMENT")
    ]


def _build_networks(raw: Mapping[str, Any], sources: Mapping[str, str]) -> dict[str, NetworkConfig]:
    networks: dict[str, NetworkConfig] = {}
    dialects = _network_dialects()
    for name, body in raw.items():
        key = f"{NETWORKS}.{name}"
        if not _NETWORK_NAME.fullmatch(name):
            raise ConfigError(
                f"config key {key}: expected a network name of lower-case letters and digits "
                "(at most 32, starting with a letter)"
            )
        if not isinstance(body, dict):
            raise ConfigError(f"config key {key}: expected a [{key}] table, got {type(body).__name__}")
        built: NetworkConfig = _build_section(key, NetworkConfig, body, sources)
        dialect = built.dialect or name
        if dialect not in dialects:
            raise ConfigError(
                f"config key {key}.dialect: expected one of {', '.join(dialects)}, got {dialect!r}"
            )
        built = dataclasses.replace(
            built, dialect=dialect, forwarding_id=built.forwarding_id or built.acquirer_id
        )
        if built.enabled:
            for required in ("endpoints", "acquirer_id", "network_id"):
                if not getattr(built, required):
                    raise ConfigError(f"config key {key}.{required}: required for an enabled network")
        if built.reconnect_backoff_initial_s > built.reconnect_backoff_max_s:
            raise ConfigError(
                f"config key {key}.reconnect_backoff_initial_s: expected at most reconnect_backoff_max_s "
                f"({built.reconnect_backoff_max_s}), got {built.reconnect_backoff_initial_s}"
            )
        networks[name] = built
    return networks


def _network_override(var: str, networks: Mapping[str, Any]) -> tuple[str, str]:
    """(network name, key) of a SWITCH_NETWORKS_<NAME>_<KEY> variable; ConfigError if it names neither."""
    name, _, key = var[len(_ENV_NETWORKS) :].lower().partition("_")
    known = [f.name for f in dataclasses.fields(NetworkConfig)]
    if name not in networks:
        defined = ", ".join(sorted(networks)) or "none"
        raise ConfigError(
            f"environment override {var}: no [networks.{name}] table to override (defined: {defined})"
        )
    if key not in known:
        close = difflib.get_close_matches(key.upper(), [k.upper() for k in known], n=1)
        hint = f" (did you mean {_ENV_NETWORKS}{name.upper()}_{close[0]}?)" if close else ""
        raise ConfigError(f"unknown environment override {var}{hint}")
    return name, key


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None, *, demo: bool = False
) -> Config:
    """Read the TOML file (if any), apply `SWITCH_*` overrides, validate everything.

    `path` None means: `SWITCH_CONFIG` if set, else `switch.toml` in the working directory if it exists,
    else defaults only. With `demo` and no [networks.*] table in the file, the demo networks
    (`demo_network_configs`) are configured, and `SWITCH_NETWORKS_*` overrides apply to them.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, dict[str, Any]] = {}
    if path is None:
        env_path = env.get(ENV_CONFIG_FILE)
        path = Path(env_path) if env_path else (Path("switch.toml") if Path("switch.toml").exists() else None)
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            parsed = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        sections = [f.name for f in dataclasses.fields(Config)]
        for name, body in parsed.items():
            if name not in sections:
                raise _unknown(name, sections)
            if not isinstance(body, dict):
                raise ConfigError(f"config key {name}: expected a [{name}] table, got {type(body).__name__}")
            raw[name] = dict(body)

    if demo and not raw.get(NETWORKS):
        raw[NETWORKS] = _demo_network_tables()
    networks_raw: dict[str, Any] = raw.pop(NETWORKS, {})

    known_env = env_keys()
    sources: dict[str, str] = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_CONFIG_FILE:
            continue
        if var.startswith(_ENV_NETWORKS):
            name, key = _network_override(var, networks_raw)
            networks_raw[name][key] = value
            sources[f"{NETWORKS}.{name}.{key}"] = var
            continue
        if var not in known_env:
            close = difflib.get_close_matches(var, list(known_env), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"unknown environment override {var}{hint}")
        section, key = known_env[var].split(".", 1)
        raw.setdefault(section, {})[key] = value
        sources[known_env[var]] = var

    hints = get_type_hints(Config)
    built = {f.name: _build_section(f.name, hints[f.name], raw.get(f.name, {}), sources) for f in _sections()}
    config = Config(**built, networks=_build_networks(networks_raw, sources))
    if config.saf.backoff_initial_s > config.saf.backoff_max_s:
        raise ConfigError(
            "config key saf.backoff_initial_s: expected at most saf.backoff_max_s "
            f"({config.saf.backoff_max_s}), got {config.saf.backoff_initial_s}"
        )
    if config.database.pool_size_min > config.database.pool_size_max:
        raise ConfigError(
            "config key database.pool_size_min: expected at most database.pool_size_max "
            f"({config.database.pool_size_max}), got {config.database.pool_size_min}"
        )
    return config


def describe() -> list[tuple[str, str, Any, str]]:
    """(dotted key, environment variable, default, doc) for every key: used by docs and `switchd config`."""
    rows = []
    env_by_key = {v: k for k, v in env_keys().items()}
    for section in _sections():
        section_cls = get_type_hints(Config)[section.name]
        for f in dataclasses.fields(section_cls):
            key = f"{section.name}.{f.name}"
            rows.append((key, env_by_key[key], f.default, f.metadata.get("doc", "")))
    for f in dataclasses.fields(NetworkConfig):
        key = f"{NETWORKS}.<name>.{f.name}"
        env_var = f"{_ENV_NETWORKS}<NAME>_{f.name.upper()}"
        rows.append((key, env_var, f.default, f.metadata.get("doc", "")))
    return rows
