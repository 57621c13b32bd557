"""M0/M2 (encrypt/decrypt a data block under a ZEK or DEK): known answers, round trips, both transports,
and the error code for each kind of bad input."""

from __future__ import annotations

import pytest
import trio

from hsm.client import HsmClient, HsmError, InProcessTransport, TcpTransport
from hsm.crypto.des import tdes_cbc_encrypt, tdes_ecb_encrypt
from hsm.keys import KEY_TYPES, ZEK, ZPK
from hsm.server import HsmServer, ServerConfig
from tests.unit.hsm.support import call, processor, wrapped

CLEAR_ZEK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
ZEK_UNDER_LMK = wrapped(CLEAR_ZEK, ZEK)
DATA = bytes(range(32))
IV = bytes.fromhex("0102030405060708")


def _fields(mode: str, data_hex: str, key: str = ZEK_UNDER_LMK, key_type: str = "00A", iv: str = "") -> str:
    return f"{mode}11{key_type}{key}{iv}{len(data_hex):04X}{data_hex}"


def test_m0_ecb_matches_tdes_ecb_of_the_clear_key() -> None:
    """If M0 encrypts in ECB mode, then the result is TDES-ECB of the data under the clear ZEK."""
    code, data = call(processor(), "M0", _fields("00", DATA.hex().upper()))
    assert code == "00"
    assert data == f"{64:04X}" + tdes_ecb_encrypt(CLEAR_ZEK, DATA).hex().upper()


def test_m0_cbc_returns_the_chaining_iv_and_the_cbc_cryptogram() -> None:
    """If M0 encrypts in CBC mode, then it returns the last cryptogram block as IV, then the cryptogram."""
    code, data = call(processor(), "M0", _fields("01", DATA.hex().upper(), iv=IV.hex().upper()))
    expected = tdes_cbc_encrypt(CLEAR_ZEK, DATA, IV)
    assert code == "00"
    assert data == expected[-8:].hex().upper() + f"{64:04X}" + expected.hex().upper()


def test_m0_binary_input_and_output_formats_carry_raw_bytes() -> None:
    """If input and output format flags are 0 (binary), then the message and result travel as raw bytes."""
    clear = b"ABCDEFGH"
    code, data = call(processor(), "M0", f"000000A{ZEK_UNDER_LMK}0008" + clear.decode())
    assert code == "00"
    assert data == "0008" + tdes_ecb_encrypt(CLEAR_ZEK, clear).decode("latin-1")


def test_m0_binary_message_ending_like_an_lmk_identifier_is_data() -> None:
    """If a binary M0 message ends in "%01", then those bytes are encrypted as data, not refused as an LMK id."""
    clear = b"ABCDE%01"
    code, data = call(processor(), "M0", f"000000A{ZEK_UNDER_LMK}0008" + clear.decode())
    assert code == "00"
    assert data == "0008" + tdes_ecb_encrypt(CLEAR_ZEK, clear).decode("latin-1")


def test_m0_accepts_lmk_identifier_00_after_the_message() -> None:
    """If "%00" follows the M0 message, then it is taken as the LMK identifier and the answer is unchanged."""
    fields = _fields("00", DATA.hex().upper())
    assert call(processor(), "M0", fields + "%00") == call(processor(), "M0", fields)


async def test_client_round_trip_in_both_modes() -> None:
    """If the client encrypts then decrypts with the same key, mode and IV, then it gets the data back."""
    client = HsmClient(InProcessTransport(processor()))
    for mode in ("ecb", "cbc"):
        cryptogram = await client.encrypt_data(key=ZEK_UNDER_LMK, data=DATA, mode=mode, iv=IV)
        assert cryptogram != DATA
        assert await client.decrypt_data(key=ZEK_UNDER_LMK, data=cryptogram, mode=mode, iv=IV) == DATA


async def test_client_accepts_a_dek() -> None:
    """If the key is a DEK (00B), then M0/M2 work with key type 00B."""
    dek = wrapped(CLEAR_ZEK, KEY_TYPES["00B"])
    client = HsmClient(InProcessTransport(processor()))
    cryptogram = await client.encrypt_data(key=dek, data=DATA, key_type="00B")
    assert await client.decrypt_data(key=dek, data=cryptogram, key_type="00B") == DATA


async def test_in_process_and_tcp_agree(nursery: trio.Nursery) -> None:
    """If the same M0 and M2 go over TCP and in-process, then both answers are identical."""
    server = HsmServer(processor(), ServerConfig(host="127.0.0.1", port=0))
    ports = await nursery.start(server.run)
    tcp = HsmClient(TcpTransport("127.0.0.1", ports[0]))
    local = HsmClient(InProcessTransport(processor()))
    try:
        for client_mode in ("ecb", "cbc"):
            a = await tcp.encrypt_data(key=ZEK_UNDER_LMK, data=DATA, mode=client_mode, iv=IV)
            b = await local.encrypt_data(key=ZEK_UNDER_LMK, data=DATA, mode=client_mode, iv=IV)
            assert a == b
            assert await tcp.decrypt_data(key=ZEK_UNDER_LMK, data=a, mode=client_mode, iv=IV) == DATA
    finally:
        await tcp.aclose()
        server.stop()


@pytest.mark.parametrize(
    ("command", "fields", "code"),
    [
        ("M0", _fields("02", "00" * 8), "02"),  # CFB8 not supported
        ("M0", f"0051000A{ZEK_UNDER_LMK}0010" + "00" * 8, "03"),  # input format flag
        ("M0", f"0019000A{ZEK_UNDER_LMK}0010" + "00" * 8, "04"),  # output format flag
        ("M0", _fields("00", "00" * 8, key_type="001"), "05"),  # not a data key type
        ("M0", _fields("00", "00" * 7), "06"),  # not whole blocks
        ("M0", _fields("00", ""), "06"),  # empty
        ("M0", _fields("00", "ZZ" * 8), "15"),  # not hex
        ("M2", _fields("00", "00" * 8, key=wrapped(CLEAR_ZEK, ZPK)), "10"),  # a ZPK is not a ZEK: parity
    ],
    ids=[
        "mode",
        "input-format",
        "output-format",
        "key-type",
        "partial-block",
        "empty",
        "not-hex",
        "wrong-lmk-pair",
    ],
)
def test_bad_input_gets_its_error_code(command: str, fields: str, code: str) -> None:
    """If an M0/M2 field is invalid, then the HSM answers with the error code for that field."""
    got, _ = call(processor(), command, fields)
    assert got == code


async def test_client_raises_hsm_error_with_the_code() -> None:
    """If the HSM refuses the data (partial block), then the client raises HsmError carrying the code."""
    client = HsmClient(InProcessTransport(processor()))
    with pytest.raises(HsmError) as info:
        await client.encrypt_data(key=ZEK_UNDER_LMK, data=b"short", mode="ecb")
    assert info.value.code == "06"
