"""The typed client methods the switch uses, over both transports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from hsm.client import HsmClient, HsmError, InProcessTransport, TcpTransport, account_number
from hsm.crypto import pinblock
from hsm.crypto.des import kcv_tdes
from hsm.keys import ZPK
from hsm.server import HsmServer, ServerConfig
from tests.unit.hsm.cases import (
    CVV_111,
    CVV_PAN,
    DUKPT_BLOCK,
    KSN,
    MAC_ALG3,
    MESSAGE,
    OFFSET,
    PAN_FOR_BLOCKS,
    PIN,
    PVV,
    TPK_BLOCK,
    W_BDK,
    W_CVK,
    W_PVK,
    W_TPK,
    W_ZAK,
    W_ZMK,
    W_ZPK,
    WRONG_PVV,
    ZPK_BLOCK,
)
from tests.unit.hsm.support import (
    ACCOUNT,
    CLEAR_ZPK,
    DECIMALIZATION_TABLE,
    VALIDATION_TEMPLATE,
    processor,
    vault,
)


@pytest.fixture(params=["in-process", "tcp"])
async def client(request: pytest.FixtureRequest, nursery: trio.Nursery) -> AsyncIterator[HsmClient]:
    if request.param == "in-process":
        hsm = HsmClient(InProcessTransport(processor()))
        yield hsm
        await hsm.aclose()
        return
    server = HsmServer(processor(), ServerConfig(host="127.0.0.1", port=0))
    ports = await nursery.start(server.run)
    hsm = HsmClient(TcpTransport("127.0.0.1", ports[0], pool_size=2))
    yield hsm
    await hsm.aclose()
    server.stop()


def test_account_number_is_twelve_digits_before_the_check_digit() -> None:
    """If a PAN is given, then the account field is its 12 rightmost digits excluding the check digit."""
    assert account_number("4000001234567899") == "000123456789"
    assert account_number("123456789") == "000012345678"


async def test_translate_pin_tpk_to_zpk(client: HsmClient) -> None:
    """If a terminal PIN block is translated, then it decrypts under the ZPK to the same PIN."""
    result = await client.translate_pin_tpk_to_zpk(tpk=W_TPK, zpk=W_ZPK, pin_block=TPK_BLOCK, account=ACCOUNT)
    assert result.pin_length == len(PIN)
    assert pinblock.decrypt_pin_block(bytes.fromhex(result.pin_block), PAN_FOR_BLOCKS, 0, CLEAR_ZPK) == PIN
    assert TPK_BLOCK not in repr(result)


async def test_translate_pin_zpk_to_zpk(client: HsmClient) -> None:
    """If a PIN block is translated between zones under the same key, then it comes back unchanged."""
    result = await client.translate_pin_zpk_to_zpk(
        source_zpk=W_ZPK, destination_zpk=W_ZPK, pin_block=ZPK_BLOCK, account=ACCOUNT
    )
    assert result.pin_block == ZPK_BLOCK


async def test_translate_pin_dukpt_to_zpk(client: HsmClient) -> None:
    """If a DUKPT PIN block is translated, then the ZPK block carries the same PIN."""
    result = await client.translate_pin_dukpt_to_zpk(
        bdk=W_BDK, zpk=W_ZPK, ksn=KSN, pin_block=DUKPT_BLOCK, account=ACCOUNT
    )
    assert result.pin_block == ZPK_BLOCK


async def test_verify_pin_pvv(client: HsmClient) -> None:
    """If the PVV is right the verification is True, if wrong it is False, for terminal and interchange."""
    common = {"pvk": W_PVK, "account": ACCOUNT, "pvki": 1}
    assert await client.verify_pin_pvv(pin_key=W_TPK, pin_block=TPK_BLOCK, pvv=PVV, **common)  # type: ignore[arg-type]
    assert not await client.verify_pin_pvv(pin_key=W_TPK, pin_block=TPK_BLOCK, pvv=WRONG_PVV, **common)  # type: ignore[arg-type]
    assert await client.verify_pin_pvv(
        pin_key=W_ZPK,
        pin_block=ZPK_BLOCK,
        pvv=PVV,
        interchange=True,
        **common,  # type: ignore[arg-type]
    )


async def test_verify_pin_ibm(client: HsmClient) -> None:
    """If the IBM offset is right the verification is True, otherwise False."""
    common = {
        "pvk": W_PVK,
        "account": ACCOUNT,
        "decimalization_table": DECIMALIZATION_TABLE,
        "validation_data": VALIDATION_TEMPLATE,
        "check_length": 4,
    }
    assert await client.verify_pin_ibm(pin_key=W_TPK, pin_block=TPK_BLOCK, offset=OFFSET, **common)  # type: ignore[arg-type]
    wrong = f"{(int(OFFSET) + 1) % 10000:04d}"
    assert not await client.verify_pin_ibm(pin_key=W_TPK, pin_block=TPK_BLOCK, offset=wrong, **common)  # type: ignore[arg-type]


async def test_generate_key_and_round_trip_through_zmk(client: HsmClient) -> None:
    """If a key is generated with export, exported again and imported, then all check values agree."""
    generated = await client.generate_key("001", "U", zmk=W_ZMK, zmk_scheme="X")
    assert generated.key_under_zmk is not None
    clear = vault().unwrap(generated.key_under_lmk, ZPK).clear
    assert generated.check_value == kcv_tdes(clear, 6)
    exported = await client.export_key("001", W_ZMK, generated.key_under_lmk, "X")
    assert exported.key_under_zmk == generated.key_under_zmk
    imported = await client.import_key("001", W_ZMK, generated.key_under_zmk, "U")
    assert imported.check_value == generated.check_value


async def test_mac_generate_and_verify(client: HsmClient) -> None:
    """If a MAC is generated, then it is the ISO 9797-1 alg. 3 MAC and verifies; a changed message does not."""
    value = await client.generate_mac(key=W_ZAK, data=MESSAGE, padding=2)
    assert value == MAC_ALG3
    assert await client.verify_mac(key=W_ZAK, data=MESSAGE, mac=value, padding=2)
    assert not await client.verify_mac(key=W_ZAK, data=MESSAGE + b"!", mac=value, padding=2)


async def test_cvv_generate_and_verify(client: HsmClient) -> None:
    """If a CVV is generated and verified, then the right one verifies and a wrong one does not."""
    assert (
        await client.generate_cvv(cvk=W_CVK, pan=CVV_PAN, expiry_yymm="8701", service_code="111") == CVV_111
    )
    assert await client.verify_cvv(
        cvk=W_CVK, pan=CVV_PAN, expiry_yymm="8701", service_code="111", cvv=CVV_111
    )
    wrong = f"{(int(CVV_111) + 1) % 1000:03d}"
    assert not await client.verify_cvv(
        cvk=W_CVK, pan=CVV_PAN, expiry_yymm="8701", service_code="111", cvv=wrong
    )


async def test_error_codes_raise_hsm_error(client: HsmClient) -> None:
    """If the HSM answers an error other than 01, then HsmError carries the command and the code."""
    with pytest.raises(HsmError) as caught:
        await client.translate_pin_tpk_to_zpk(
            tpk=W_TPK, zpk=W_ZPK, pin_block=TPK_BLOCK, account=ACCOUNT, source_format="99"
        )
    assert (caught.value.command, caught.value.code) == ("CA", "23")


async def test_diagnostics_and_echo(client: HsmClient) -> None:
    """If NC and B2 are called, then the LMK check value and the echoed text come back."""
    check_value, firmware = await client.diagnostics()
    assert check_value == vault().lmk.check_value()
    assert firmware
    assert await client.echo("hello") == "hello"


async def test_zero_length_header_works_over_tcp(nursery: trio.Nursery) -> None:
    """If hsmd and the client are configured with no message header, then calls are answered."""
    server = HsmServer(processor(header_length=0), ServerConfig(host="127.0.0.1", port=0))
    ports = await nursery.start(server.run)
    hsm = HsmClient(TcpTransport("127.0.0.1", ports[0]), header_length=0)
    assert await hsm.echo("no header") == "no header"
    await hsm.aclose()
    server.stop()


async def test_concurrent_calls_share_the_pool(client: HsmClient) -> None:
    """If 50 calls run concurrently, then each gets its own answer."""
    results: dict[int, str] = {}

    async def one(n: int) -> None:
        results[n] = await client.echo(f"{n:03d}")

    async with trio.open_nursery() as nursery:
        for n in range(50):
            nursery.start_soon(one, n)
    assert results == {n: f"{n:03d}" for n in range(50)}


async def test_verify_pin_pvv_dukpt(client: HsmClient) -> None:
    """If a DUKPT PIN block is checked against its PVV (GQ), then True; against another PVV, False."""
    common = {"bdk": W_BDK, "pvk": W_PVK, "ksn": KSN, "pin_block": DUKPT_BLOCK, "account": ACCOUNT, "pvki": 1}
    assert await client.verify_pin_pvv_dukpt(pvv=PVV, **common)  # type: ignore[arg-type]
    assert not await client.verify_pin_pvv_dukpt(pvv=WRONG_PVV, **common)  # type: ignore[arg-type]


async def test_verify_pin_ibm_dukpt(client: HsmClient) -> None:
    """If a DUKPT PIN block is checked against its IBM offset (GO), then True; against another, False."""
    common = {
        "bdk": W_BDK,
        "pvk": W_PVK,
        "ksn": KSN,
        "pin_block": DUKPT_BLOCK,
        "account": ACCOUNT,
        "decimalization_table": DECIMALIZATION_TABLE,
        "validation_data": VALIDATION_TEMPLATE,
        "check_length": 4,
    }
    assert await client.verify_pin_ibm_dukpt(offset=OFFSET, **common)  # type: ignore[arg-type]
    wrong = f"{(int(OFFSET) + 1) % 10000:04d}"
    assert not await client.verify_pin_ibm_dukpt(offset=wrong, **common)  # type: ignore[arg-type]


async def test_new_pin_offset_through_the_lmk(client: HsmClient) -> None:
    """If a ZPK PIN block goes to the LMK (JE) and an offset is made from it (DE), then it is the PIN's offset."""
    pin_under_lmk = await client.translate_pin_zpk_to_lmk(zpk=W_ZPK, pin_block=ZPK_BLOCK, account=ACCOUNT)
    assert len(pin_under_lmk) == len(PIN) + 1
    offset = await client.generate_ibm_offset(
        pvk=W_PVK,
        pin_under_lmk=pin_under_lmk,
        account=ACCOUNT,
        decimalization_table=DECIMALIZATION_TABLE,
        validation_data=VALIDATION_TEMPLATE,
        check_length=4,
    )
    assert offset == OFFSET
