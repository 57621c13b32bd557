"""The Hsm port over the software HSM's client: in-process (same process, no sockets) or TCP to hsmd.

Translates the pipeline's needs into payShield-style host commands (PIN verification DC/DA for TPK PIN
blocks and GQ/GO for DUKPT ones, PIN change JC or CI+JE then DG/DE, CY, M6/M8, A0; interbank: CA/CI to a
network's ZPK, A6 for a ZPK received under a ZMK, EC/EA for PIN blocks under a ZPK) and the HSM's error
codes into HsmFailure. A verification that fails is False, never an exception.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable
from pathlib import Path
from typing import Literal, TypeVar

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
from switch.ports import HsmFailure, ImportedKey, PinKey, PinVerification, TpkPinKey, VisaPvv, WorkingKey

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
_NO_VALID_PIN = ("20", "24")  # the PIN block does not decrypt to a valid PIN under the key given

R = TypeVar("R")


async def _pin_work(what: str, work: Awaitable[R], *, no_valid_pin: R) -> R:
    """`work`'s result; `no_valid_pin` if the PIN block holds no valid PIN; other errors as HsmFailure."""
    try:
        return await work
    except HsmError as exc:
        if exc.code in _NO_VALID_PIN:
            return no_valid_pin
        raise HsmFailure(f"{what} failed with HSM error {exc.code}") from None
    except HsmTransportError as exc:
        raise HsmFailure(str(exc)) from None


async def _hsm_work(what: str, work: Awaitable[R]) -> R:
    """`work`'s result; any HSM error as HsmFailure naming `what` and the kind of error."""
    try:
        return await work
    except (HsmError, HsmTransportError) as exc:
        raise HsmFailure(f"{what} failed: {type(exc).__name__}") from None


class ClientHsm:
    def __init__(self, client: HsmClient) -> None:
        self.client = client
        # A ZPK under the LMK, made on first use, only to carry a DUKPT PIN change's new PIN to the LMK.
        self._transit_zpk: str | None = None

    async def verify_pin(
        self, *, key: PinKey, pin_block: bytes, pan: str, method: PinVerification, value: str
    ) -> bool:
        block, account = pin_block.hex().upper(), account_number(pan)
        if isinstance(key, TpkPinKey):
            check = self._verify_under_pin_key(key.tpk, block, account, method, value, interchange=False)
        elif isinstance(method, VisaPvv):
            check = self.client.verify_pin_pvv_dukpt(
                bdk=key.bdk,
                pvk=method.pvk,
                ksn=key.ksn,
                pin_block=block,
                account=account,
                pvki=method.pvki,
                pvv=value,
            )
        else:
            check = self.client.verify_pin_ibm_dukpt(
                bdk=key.bdk,
                pvk=method.pvk,
                ksn=key.ksn,
                pin_block=block,
                account=account,
                offset=value,
                decimalization_table=method.decimalization_table,
                validation_data=method.validation_data,
                check_length=method.check_length,
            )
        # No valid PIN in the block: a wrong PIN key or PIN.
        return await _pin_work("PIN verification", check, no_valid_pin=False)

    async def verification_value_for_new_pin(
        self, *, key: PinKey, pin_block: bytes, pan: str, method: PinVerification
    ) -> str | None:
        # No valid PIN in the block: the terminal's problem, not the HSM's.
        return await _pin_work(
            "PIN verification value generation",
            self._verification_value_for_new_pin(key, pin_block.hex().upper(), account_number(pan), method),
            no_valid_pin=None,
        )

    async def _verification_value_for_new_pin(
        self, key: PinKey, block: str, account: str, method: PinVerification
    ) -> str | None:
        if isinstance(key, TpkPinKey):
            pin_under_lmk = await self.client.translate_pin_tpk_to_lmk(
                tpk=key.tpk, pin_block=block, account=account
            )
        else:
            # No host command takes a DUKPT PIN block to the LMK: it goes there through a ZPK of our
            # own (CI, then JE), both steps inside the HSM.
            zpk = self._transit_zpk or await self._new_transit_zpk()
            moved = await self.client.translate_pin_dukpt_to_zpk(
                bdk=key.bdk, zpk=zpk, ksn=key.ksn, pin_block=block, account=account
            )
            pin_under_lmk = await self.client.translate_pin_zpk_to_lmk(
                zpk=zpk, pin_block=moved.pin_block, account=account
            )
        if isinstance(method, VisaPvv):
            return await self.client.generate_pvv(
                pvk=method.pvk, pin_under_lmk=pin_under_lmk, account=account, pvki=method.pvki
            )
        # A PIN under the LMK has one digit more than the PIN; an offset needs a PIN at least as long as
        # the digits it checks.
        if len(pin_under_lmk) - 1 < method.check_length:
            return None
        return await self.client.generate_ibm_offset(
            pvk=method.pvk,
            pin_under_lmk=pin_under_lmk,
            account=account,
            decimalization_table=method.decimalization_table,
            validation_data=method.validation_data,
            check_length=method.check_length,
        )

    async def _call(self, command: str, fields: str) -> tuple[str, str]:
        """A host command's (error code, data); the caller judges the code. An unreachable HSM is HsmFailure."""
        try:
            return await self.client.call(command, fields)
        except HsmTransportError as exc:
            raise HsmFailure(str(exc)) from None

    async def _new_transit_zpk(self) -> str:
        zpk = (await self.client.generate_key("001", "U")).key_under_lmk
        self._transit_zpk = zpk
        return zpk

    async def verify_cvv(self, *, cvk: str, pan: str, expiry_yymm: str, service_code: str, cvv: str) -> bool:
        return await _hsm_work(
            "CVV verification",
            self.client.verify_cvv(
                cvk=cvk, pan=pan, expiry_yymm=expiry_yymm, service_code=service_code, cvv=cvv
            ),
        )

    async def verify_mac(self, *, tak: str, data: bytes, mac: bytes) -> bool:
        return await _hsm_work(
            "MAC verification",
            self.client.verify_mac(key=tak, data=data, mac=mac.hex().upper(), key_type="003"),
        )

    async def generate_mac(self, *, tak: str, data: bytes) -> bytes:
        mac = await _hsm_work(
            "MAC generation", self.client.generate_mac(key=tak, data=data, key_type="003", mac_hex=16)
        )
        return bytes.fromhex(mac)

    # -- interbank ----------------------------------------------------------------------------------

    async def translate_pin_to_zpk(
        self, *, key: PinKey, zpk: str, pin_block: bytes, pan: str
    ) -> bytes | None:
        block, account = pin_block.hex().upper(), account_number(pan)
        if isinstance(key, TpkPinKey):
            translation = self.client.translate_pin_tpk_to_zpk(
                tpk=key.tpk, zpk=zpk, pin_block=block, account=account
            )
        else:
            translation = self.client.translate_pin_dukpt_to_zpk(
                bdk=key.bdk, zpk=zpk, ksn=key.ksn, pin_block=block, account=account
            )
        # No valid PIN in the block: the terminal's problem, not the HSM's.
        moved = await _pin_work("PIN translation", translation, no_valid_pin=None)
        return None if moved is None else bytes.fromhex(moved.pin_block)

    async def import_zone_pin_key(self, *, zmk: str, zpk_under_zmk: str) -> ImportedKey:
        # Networks send each half TDES-ECB under the ZMK: key scheme X (X9.17) on the ZMK side.
        under_zmk = zpk_under_zmk if zpk_under_zmk[:1] in ("X", "U") else "X" + zpk_under_zmk
        code, data = await self._call("A6", f"001{zmk}{under_zmk}U")
        # 01 is advice only: the key's parity was wrong and has been forced odd; the data is returned. A
        # key damaged on the way is caught by the check value comparison, not here.
        if code not in ("00", "01"):
            raise HsmFailure(f"key import failed with HSM error {code}")
        return ImportedKey(under_lmk=data[:_UNDER_LMK_LENGTH], check_value=data[_UNDER_LMK_LENGTH:])

    async def verify_pin_under_zpk(
        self, *, zpk: str, pin_block: bytes, pan: str, method: PinVerification, value: str
    ) -> bool:
        block, account = pin_block.hex().upper(), account_number(pan)
        check = self._verify_under_pin_key(zpk, block, account, method, value, interchange=True)
        # The block holds no valid PIN under this ZPK: not this PIN.
        return await _pin_work("PIN verification", check, no_valid_pin=False)

    async def _verify_under_pin_key(
        self,
        pin_key: str,
        block: str,
        account: str,
        method: PinVerification,
        value: str,
        *,
        interchange: bool,
    ) -> bool:
        """DC/DA: a terminal's PIN block under its TPK; EC/EA (`interchange`): a PIN block under a ZPK."""
        if isinstance(method, VisaPvv):
            return await self.client.verify_pin_pvv(
                pin_key=pin_key,
                pvk=method.pvk,
                pin_block=block,
                account=account,
                pvki=method.pvki,
                pvv=value,
                interchange=interchange,
            )
        return await self.client.verify_pin_ibm(
            pin_key=pin_key,
            pvk=method.pvk,
            pin_block=block,
            account=account,
            offset=value,
            decimalization_table=method.decimalization_table,
            validation_data=method.validation_data,
            check_length=method.check_length,
            interchange=interchange,
        )

    async def generate_working_key(self, *, kind: Literal["tpk", "tak"], tmk: str) -> WorkingKey:
        # A0 mode 1 with the TMK flag: the new key under the LMK and under the terminal's TMK (scheme X:
        # plain TDES ECB of each half, what a terminal decrypts with its master key).
        code, data = await self._call("A0", f"1{_KEY_TYPES[kind]}U;1{tmk}X")
        if code != "00":
            raise HsmFailure(f"key generation failed with HSM error {code}")
        return WorkingKey(
            under_lmk=data[:_UNDER_LMK_LENGTH],
            under_tmk=data[_UNDER_LMK_LENGTH:-6],
            check_value=data[-6:],
        )
