"""Every host command in-process: the response agrees with the `hsm.crypto` primitives on the clear test
keys, and every kind of bad input gets its documented payShield error code."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsm.host import commands
from hsm.host.commands import COMMANDS
from hsm.host.processor import HostCommandProcessor

from .cases import CASES, W_ZPK, Case
from .support import call, processor, vault


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_command_case(case: Case) -> None:
    """If the command of the case is sent, then its error code is the documented one and its data checks out."""
    error, data = call(processor(), case.command, case.fields)
    assert error == case.error
    if case.check is not None:
        case.check(data)
    if error not in ("00", "01"):
        assert data == ""


def test_cvv_of_published_example_through_cw() -> None:
    """If CW is asked for the CVV of the published worked example, then 856 comes back."""
    # Worked CVN example (topic.alibabacloud.com "algorithm generation 7: CVN"), also used by the crypto
    # tests: CVK A 0123456789ABCDEF, CVK B FEDCBA9876543210, PAN 4123456789012345, expiry 8701, service 111.
    from hsm.keys import CVK

    cvk = vault().wrap(bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"), CVK, "U")
    assert call(processor(), "CW", f"{cvk}4123456789012345;8701111") == ("00", "856")


def test_message_too_short_for_a_command_code_gets_zz15() -> None:
    """If a message ends inside the command code, then the answer is ZZ with error 15."""
    assert processor().process(b"HDR1N") == b"HDR1ZZ15"


def test_binary_command_code_gets_zz68() -> None:
    """If the command code is not two letters or digits (binary garbage), then the answer is ZZ with 68."""
    assert processor().process(b"HDR1\x00\xff") == b"HDR1ZZ68"


def test_header_of_configured_length_is_echoed() -> None:
    """If the header length is 6, then the 6-character header is echoed before the response code."""
    proc = HostCommandProcessor(vault(), header_length=6)
    assert proc.process(b"ABCDEFB20002OK") == b"ABCDEFB300OK"


def test_disabled_command_answers_68() -> None:
    """If a command is disabled by configuration, then it answers error 68."""
    proc = HostCommandProcessor(vault(), disabled_commands=frozenset({"NC"}))
    assert proc.process(b"0000NC") == b"0000ND68"
    assert "NC" not in proc.command_codes


def test_bug_in_a_handler_becomes_error_15(monkeypatch: pytest.MonkeyPatch) -> None:
    """If a handler raises an unexpected exception, then the processor answers 15 instead of raising."""

    def broken(vault: object, reader: object) -> str:
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(commands.COMMANDS, "NC", broken)
    assert processor().process(b"0000NC") == b"0000ND15"


def test_import_parity_advice_still_returns_the_key() -> None:
    """If A6 imports a key with bad parity, then error 01 comes with the key under LMK and its check value."""
    case = next(c for c in CASES if c.id == "A6 import with bad parity is advice 01")
    error, data = call(processor(), case.command, case.fields)
    assert error == "01"
    assert len(data) == 33 + 6


def test_every_command_has_a_success_case_and_an_error_case() -> None:
    """If a command is implemented, then the case table (run in-process, over TCP and against hsmd) covers it."""
    covered_ok = {c.command for c in CASES if c.error == "00"}
    covered_error = {c.command for c in CASES if c.error != "00"}
    implemented = set(processor().command_codes)
    assert implemented - covered_ok == set()
    assert implemented - {"NC"} - covered_error == set()  # NC has no failure mode


def test_every_command_in_the_brief_is_implemented() -> None:
    """If the processor lists its commands, then every command the switch relies on is there."""
    required = {
        "NC",
        "B2",
        "A0",
        "A6",
        "A8",
        "BU",
        "FA",
        "GC",
        "CA",
        "CC",
        "CI",
        "JE",
        "JG",
        "DA",
        "DC",
        "EA",
        "EC",
        "DE",
        "DG",
        "CW",
        "CY",
        "M6",
        "M8",
    }
    assert required <= set(processor().command_codes)


def test_zpk_field_is_reused_from_cache_across_commands() -> None:
    """If the same ZPK field is used by many commands, then it is unwrapped only once."""
    proc = processor()
    for _ in range(5):
        call(proc, "BU", f"011{W_ZPK}")
    info = proc.vault.unwrap.cache_info()
    assert info.misses == 1
    assert info.hits == 4


@given(payload=st.binary(max_size=200))
def test_arbitrary_bytes_never_break_the_processor(payload: bytes) -> None:
    """If any bytes arrive as a request, then the answer is the header, a response code and a 2-digit error."""
    response = processor().process(payload)
    header = payload[:4]
    assert response.startswith(header)
    assert response[len(header) + 2 : len(header) + 4].isdigit()


@given(
    command=st.sampled_from([c for c in COMMANDS if c not in ("NC", "B2")]),
    cut=st.integers(min_value=0, max_value=200),
)
def test_truncated_requests_get_an_error_not_a_crash(command: str, cut: int) -> None:
    """If a valid request of any command is cut short, then it is answered with a non-zero error code."""
    case = next(c for c in CASES if c.command == command and c.error == "00")
    # FA and GC end with an optional ";" + 3 characters: without it the request is complete.
    mandatory = len(case.fields) - (4 if command in ("FA", "GC") else 0)
    error, _ = call(processor(), command, case.fields[: min(cut, mandatory - 1)])
    assert error != "00"
