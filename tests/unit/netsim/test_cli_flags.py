"""netsim's command line: fault flags become the same settings as PUT /faults, checked the same way."""

from __future__ import annotations

import pytest

from simulators.netsim import cli
from simulators.netsim.faults import FAULT_KEYS


def config(*args: str):
    return cli._config(cli.parser().parse_args(["--network", "visa", *args]))


def test_every_fault_has_a_flag():
    """If --help is read, then each fault key has its dashed flag."""
    text = cli.parser().format_help()
    assert all("--" + key.replace("_", "-") in text for key in FAULT_KEYS)


def test_fault_flags_set_the_faults():
    """If fault flags are given, then the config's faults carry them."""
    faults = config(
        "--latency-ms",
        "20",
        "--late-share",
        "0.5",
        "--decline-code",
        "62",
        "--stale-key",
        "--drop-after",
        "4",
    ).faults
    assert (
        faults.latency_ms,
        faults.late_share,
        faults.decline_code,
        faults.stale_key,
        faults.drop_after,
    ) == (
        20,
        0.5,
        "62",
        True,
        4,
    )


def test_zero_is_a_value_not_an_absent_flag():
    """If --late-ms 0 is given, then late answers get no extra delay instead of the 5000 ms default."""
    assert config("--late-ms", "0").faults.late_ms == 0
    assert config().faults.late_ms == 5000


def test_ports_default_to_the_networks_and_zero_means_any():
    """If no port is given, then the config leaves it to the network's demo port; --port 0 asks for any."""
    assert config().port is None
    assert config("--port", "0").port == 0


def test_out_of_range_fault_flag_exits_2(capsys):
    """If a fault flag is out of range, then netsim exits 2 naming the key."""
    with pytest.raises(SystemExit) as caught:
        cli.main(["--network", "visa", "--no-answer-share", "2"])
    assert caught.value.code == 2
    assert "no_answer_share" in capsys.readouterr().err
