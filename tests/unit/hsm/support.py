"""Shared test material: a vault under the public test LMK and known clear keys wrapped under it.

The clear keys are test values made up for these tests (odd parity); the LMK is the published payShield
simulator test LMK, so everything here is public by construction.
"""

from __future__ import annotations

from hsm.host.processor import HostCommandProcessor
from hsm.keys import KeyType, KeyVault
from hsm.lmk import VariantLmk

CLEAR_TPK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
CLEAR_ZPK = bytes.fromhex("A7F1DA4A3B5D7C0D2F6E4F3E5D2C1AA2")
CLEAR_ZPK2 = bytes.fromhex("1C1C1C1C1C1C1C1C2323232323232323")
CLEAR_PVK = bytes.fromhex("4CA2161637D0133E5B1A4A2F40D30D8F")
CLEAR_CVK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
CLEAR_ZAK = bytes.fromhex("8A1F6B4C2C3E5E708A1F6B4C2C3E5E70")
CLEAR_TAK = bytes.fromhex("1F2F3D4C5B6B79801F2F3D4C5B6B7980")
CLEAR_ZMK = bytes.fromhex("3E4F5D6D7A8A91A2B3C4D5E6F7081929")
CLEAR_BDK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")

PAN = "4000001234567899"
ACCOUNT = "000123456789"  # 12 rightmost digits of PAN excluding the check digit
DECIMALIZATION_TABLE = "0123456789012345"
VALIDATION_TEMPLATE = "0000000N0000"  # 12 characters; N = the last 5 account digits


def vault() -> KeyVault:
    return KeyVault(VariantLmk.test_lmk())


def processor(**kw: object) -> HostCommandProcessor:
    return HostCommandProcessor(vault(), **kw)  # type: ignore[arg-type]


def wrapped(clear: bytes, kt: KeyType, scheme: str = "U") -> str:
    return vault().wrap(clear, kt, scheme)


def call(proc: HostCommandProcessor, command: str, fields: str = "", header: str = "HDR1") -> tuple[str, str]:
    """Run one command in-process; returns (error code, response fields) after checking header and code."""
    response = proc.process((header + command + fields).encode("latin-1")).decode("latin-1")
    assert response[:4] == header
    assert response[4:6] == command[0] + chr(ord(command[1]) + 1)
    return response[6:8], response[8:]
