"""The Hsm port over the software HSM's client: in-process (same process, no sockets) or TCP to hsmd.

Translates the pipeline's needs into payShield-style host commands (DC, CY, M6/M8, A0) and the HSM's
error codes into HsmFailure. A verification that fails is False, never an exception.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from hsm.client import (
    HsmClient,
    HsmError,
    HsmTransportError,
    InProcessTransport,
    TcpTransport,
    account_number,
)
from hsm.host.processor import HostCommandProcessor
from hsm.keys import KeyVault
from hsm.lmk import PASSPHRASE_ENV, TEST_LMK_WARNING, LmkFileError, VariantLmk, load_lmk_file
from switch.config import HsmConfig
from switch.logs import get_logger
from switch.ports import HsmFailure, WorkingKey

__all__ = ["ClientHsm", "HsmSetupError", "open_hsm"]


log = get_logger("hsm")


class HsmSetupError(RuntimeError):
    """The HSM cannot be set up from the configuration (no LMK, wrong passphrase...)."""


def open_hsm(config: HsmConfig, *, allow_test_lmk: bool) -> tuple[ClientHsm, str]:
    """The configured HSM client and a one-line description of it (for the ready line)."""
    if config.mode == "tcp":
        transport = TcpTransport(
            config.host, config.port, pool_size=config.connections_max, timeout_s=config.timeout_s
        )
        client = HsmClient(transport, header_length=config.header_length)
        return ClientHsm(client), f"hsmd at {config.host}:{config.port}"
    if config.lmk_file:
        passphrase = os.environ.get(PASSPHRASE_ENV, "")
        if not passphrase:
            raise HsmSetupError(f"hsm.lmk_file is set: put its passphrase in {PASSPHRASE_ENV}")
        try:
            lmk = load_lmk_file(Path(config.lmk_file), passphrase)
        except LmkFileError as exc:
            raise HsmSetupError(str(exc)) from None
        described = f"in-process, LMK {lmk.check_value()[:6]}"
    elif allow_test_lmk:
        lmk = VariantLmk.test_lmk()
        log.warning("test LMK loaded", warning=TEST_LMK_WARNING)
        described = "in-process, PUBLIC TEST LMK"
    else:
        raise HsmSetupError(
            'no LMK: set hsm.lmk_file (make one with `hsmd init`), use hsm.mode = "tcp", '
            "or run `switchd run --demo` for the public test LMK"
        )
    processor = HostCommandProcessor(KeyVault(lmk), header_length=config.header_length)
    client = HsmClient(InProcessTransport(processor), header_length=config.header_length)
    return ClientHsm(client), described


_KEY_TYPES = {"tpk": "002", "tak": "003"}
_UNDER_LMK_LENGTH = 33  # 'U' + 32 hex digits


class ClientHsm:
    def __init__(self, client: HsmClient) -> None:
        self.client = client

    async def verify_pin_pvv(
        self, *, tpk: str, pvk: str, pin_block: bytes, pan: str, pvki: int, pvv: str
    ) -> bool:
        try:
            return await self.client.verify_pin_pvv(
                pin_key=tpk,
                pvk=pvk,
                pin_block=pin_block.hex().upper(),
                account=account_number(pan),
                pvki=pvki,
                pvv=pvv,
            )
        except HsmError as exc:
            if exc.code in ("20", "24"):  # PIN block does not decrypt to a valid PIN: a wrong PIN key or PIN
                return False
            raise HsmFailure(f"PIN verification failed with HSM error {exc.code}") from None
        except HsmTransportError as exc:
            raise HsmFailure(str(exc)) from None

    async def pvv_for_new_pin(
        self, *, tpk: str, pvk: str, pin_block: bytes, pan: str, pvki: int
    ) -> str | None:
        account = account_number(pan)
        try:
            pin_under_lmk = await self.client.translate_pin_tpk_to_lmk(
                tpk=tpk, pin_block=pin_block.hex().upper(), account=account
            )
            return await self.client.generate_pvv(
                pvk=pvk, pin_under_lmk=pin_under_lmk, account=account, pvki=pvki
            )
        except HsmError as exc:
            if exc.code in ("20", "24"):  # not a valid PIN block: the terminal's problem, not the HSM's
                return None
            raise HsmFailure(f"PVV generation failed with HSM error {exc.code}") from None
        except HsmTransportError as exc:
            raise HsmFailure(str(exc)) from None

    async def verify_cvv(self, *, cvk: str, pan: str, expiry_yymm: str, service_code: str, cvv: str) -> bool:
        try:
            return await self.client.verify_cvv(
                cvk=cvk, pan=pan, expiry_yymm=expiry_yymm, service_code=service_code, cvv=cvv
            )
        except (HsmError, HsmTransportError) as exc:
            raise HsmFailure(f"CVV verification failed: {type(exc).__name__}") from None

    async def verify_mac(self, *, tak: str, data: bytes, mac: bytes) -> bool:
        try:
            return await self.client.verify_mac(key=tak, data=data, mac=mac.hex().upper(), key_type="003")
        except (HsmError, HsmTransportError) as exc:
            raise HsmFailure(f"MAC verification failed: {type(exc).__name__}") from None

    async def generate_mac(self, *, tak: str, data: bytes) -> bytes:
        try:
            mac = await self.client.generate_mac(key=tak, data=data, key_type="003", mac_hex=16)
        except (HsmError, HsmTransportError) as exc:
            raise HsmFailure(f"MAC generation failed: {type(exc).__name__}") from None
        return bytes.fromhex(mac)

    async def generate_working_key(self, *, kind: Literal["tpk", "tak"], tmk: str) -> WorkingKey:
        # A0 mode 1 with the TMK flag: the new key under the LMK and under the terminal's TMK (scheme X:
        # plain TDES ECB of each half, what a terminal decrypts with its master key).
        try:
            code, data = await self.client.call("A0", f"1{_KEY_TYPES[kind]}U;1{tmk}X")
        except HsmTransportError as exc:
            raise HsmFailure(str(exc)) from None
        if code != "00":
            raise HsmFailure(f"key generation failed with HSM error {code}")
        return WorkingKey(
            under_lmk=data[:_UNDER_LMK_LENGTH],
            under_tmk=data[_UNDER_LMK_LENGTH:-6],
            check_value=data[-6:],
        )
