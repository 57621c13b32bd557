"""The HSM client the switch uses: one interface, two transports.

- `InProcessTransport` hands the request payload to a `HostCommandProcessor` in the same process (no
  sockets), so tests and a single-process deployment get exactly what hsmd would answer.
- `TcpTransport` talks to hsmd (or a hardware HSM speaking the same host commands) over a pool of TCP
  connections, one request in flight per connection, with a per-call timeout; a connection that fails is
  dropped and the next call opens a new one.

`HsmClient` builds the commands and parses the answers. Verification methods return a bool (error code
01 is "did not verify"); every other non-zero error code raises `HsmError` carrying the code. Nothing here
holds a clear key or PIN: keys travel encrypted under the LMK and PINs inside PIN blocks.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Protocol

import trio

from hsm.host.processor import HostCommandProcessor
from hsm.host.protocol import FRAME_BYTES_MAX_DEFAULT, FrameDecoder, encode_frame, response_code

__all__ = [
    "GeneratedKey",
    "HsmClient",
    "HsmError",
    "HsmTransportError",
    "InProcessTransport",
    "PinTranslation",
    "TcpTransport",
    "Transport",
    "account_number",
]


class HsmError(Exception):
    """The HSM answered with a non-zero error code (other than a plain verification failure)."""

    def __init__(self, command: str, code: str) -> None:
        super().__init__(f"HSM command {command} failed with error code {code}")
        self.command = command
        self.code = code


class HsmTransportError(Exception):
    """The HSM could not be reached or did not answer in time."""


def account_number(pan: str) -> str:
    """The 12 rightmost PAN digits excluding the check digit: the account field of the PIN commands."""
    return pan[:-1][-12:].rjust(12, "0")


@dataclass(frozen=True)
class PinTranslation:
    pin_length: int
    pin_block: str
    format_code: str

    def __repr__(self) -> str:
        return f"PinTranslation(pin_length={self.pin_length}, format_code={self.format_code!r})"


@dataclass(frozen=True)
class GeneratedKey:
    key_under_lmk: str
    check_value: str
    key_under_zmk: str | None = None


class Transport(Protocol):
    async def exchange(self, payload: bytes) -> bytes: ...

    async def aclose(self) -> None: ...


class InProcessTransport:
    """Calls the command processor directly."""

    def __init__(self, processor: HostCommandProcessor) -> None:
        self._processor = processor

    async def exchange(self, payload: bytes) -> bytes:
        # Cancellation is honoured, but the call does not yield to the scheduler: a command takes tens
        # of microseconds, less than one pass of trio's run loop would cost, and a request's handler
        # yields at its next real wait (the ledger, the network) anyway.
        await trio.lowlevel.checkpoint_if_cancelled()
        return self._processor.process(payload)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class _Connection:
    def __init__(self, stream: trio.SocketStream, frame_bytes_max: int) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(frame_bytes_max)

    async def exchange(self, payload: bytes) -> bytes:
        await self.stream.send_all(encode_frame(payload))
        while True:
            frame = self.decoder.next_frame()
            if frame is not None:
                return frame
            data = await self.stream.receive_some(65536)
            if not data:
                raise HsmTransportError("HSM closed the connection")
            self.decoder.feed(data)


class TcpTransport:
    """A pool of up to `pool_size` TCP connections to hsmd; each call has `timeout_s` to complete."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        pool_size: int = 4,
        timeout_s: float = 2.0,
        connect_timeout_s: float = 2.0,
        frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT,
    ) -> None:
        self._host = host
        self._port = port
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._frame_bytes_max = frame_bytes_max
        self._slots = trio.Semaphore(pool_size)
        self._idle: list[_Connection] = []
        self._closed = False

    async def _connect(self) -> _Connection:
        try:
            with trio.fail_after(self._connect_timeout_s):
                stream = await trio.open_tcp_stream(self._host, self._port)
        except (OSError, trio.TooSlowError) as exc:
            raise HsmTransportError(f"cannot connect to HSM at {self._host}:{self._port}") from exc
        return _Connection(stream, self._frame_bytes_max)

    async def exchange(self, payload: bytes) -> bytes:
        if self._closed:
            raise HsmTransportError("transport is closed")
        async with self._slots:
            # A pooled connection may have been closed by the server while idle: retry once on a fresh one.
            for attempt in range(2):
                reused = bool(self._idle)
                connection = self._idle.pop() if reused else await self._connect()
                completed = False
                try:
                    with trio.fail_after(self._timeout_s):
                        response = await connection.exchange(payload)
                    completed = True
                except (trio.TooSlowError, OSError, trio.BrokenResourceError, HsmTransportError) as exc:
                    if reused and attempt == 0 and not isinstance(exc, trio.TooSlowError):
                        continue
                    raise HsmTransportError("HSM call failed or timed out") from exc
                finally:
                    # A connection interrupted mid-call (error, timeout or cancellation) may still deliver a
                    # late answer, which the next caller would take for its own: never reuse it.
                    if not completed:
                        await trio.aclose_forcefully(connection.stream)
                self._idle.append(connection)
                return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await trio.aclose_forcefully(connection.stream)


class HsmClient:
    """Typed host commands over any `Transport`."""

    def __init__(self, transport: Transport, *, header_length: int = 4) -> None:
        self._transport = transport
        self._header_length = header_length
        self._counter = itertools.count()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def call(self, command: str, fields: str) -> tuple[str, str]:
        """Send one command; returns (error code, response fields). Raises HsmTransportError on I/O failure."""
        width = self._header_length
        # With no header configured the header must be empty: "0" would be a 1-character header.
        header = f"{next(self._counter) % 10**width:0{width}d}" if width else ""
        response = (await self._transport.exchange((header + command + fields).encode("latin-1"))).decode(
            "latin-1"
        )
        h = self._header_length
        if response[:h] != header or response[h : h + 2] != response_code(command):
            raise HsmTransportError(f"HSM response does not match command {command}")
        return response[h + 2 : h + 4], response[h + 4 :]

    async def _ok(self, command: str, fields: str) -> str:
        code, data = await self.call(command, fields)
        if code != "00":
            raise HsmError(command, code)
        return data

    async def _verified(self, command: str, fields: str) -> bool:
        code, _ = await self.call(command, fields)
        if code == "00":
            return True
        if code == "01":
            return False
        raise HsmError(command, code)

    # --- diagnostics and keys ---

    async def diagnostics(self) -> tuple[str, str]:
        """NC: (LMK check value, firmware number)."""
        data = await self._ok("NC", "")
        return data[:16], data[16:]

    async def echo(self, data: str) -> str:
        return await self._ok("B2", f"{len(data):04X}{data}")

    async def generate_key(
        self, key_type: str, scheme: str = "U", *, zmk: str | None = None, zmk_scheme: str = "X"
    ) -> GeneratedKey:
        """A0: a new key under the LMK (and under `zmk` when given)."""
        if zmk is None:
            data = await self._ok("A0", f"0{key_type}{scheme}")
            return GeneratedKey(key_under_lmk=data[:-6], check_value=data[-6:])
        data = await self._ok("A0", f"1{key_type}{scheme};0{zmk}{zmk_scheme}")
        under_lmk_len = {"Z": 16, "U": 33, "X": 33, "T": 49, "Y": 49}[scheme]
        return GeneratedKey(
            key_under_lmk=data[:under_lmk_len], key_under_zmk=data[under_lmk_len:-6], check_value=data[-6:]
        )

    async def import_key(
        self, key_type: str, zmk: str, key_under_zmk: str, scheme: str = "U"
    ) -> GeneratedKey:
        """A6: a key received under a ZMK, re-encrypted under the LMK."""
        data = await self._ok("A6", f"{key_type}{zmk}{key_under_zmk}{scheme}")
        return GeneratedKey(key_under_lmk=data[:-6], check_value=data[-6:])

    async def export_key(self, key_type: str, zmk: str, key: str, zmk_scheme: str = "X") -> GeneratedKey:
        """A8: a key under the LMK, encrypted under a ZMK for a partner (`key_under_zmk`)."""
        data = await self._ok("A8", f"{key_type}{zmk}{key}{zmk_scheme}")
        return GeneratedKey(key_under_lmk=key, key_under_zmk=data[:-6], check_value=data[-6:])

    # --- PINs ---

    @staticmethod
    def _pin_translation(data: str) -> PinTranslation:
        """The answer to CA, CC and CI: PIN length, the PIN block under the destination key, its format."""
        return PinTranslation(pin_length=int(data[:2]), pin_block=data[2:18], format_code=data[18:20])

    @staticmethod
    def _dukpt_key_fields(bdk: str, pvk: str, ksn_descriptor: str, ksn: str) -> str:
        """The keys of GQ and GO: mode 0 (verify), the BDK, the PVK, and the KSN that derives the PIN key."""
        return f"0{bdk}{pvk}{ksn_descriptor}{ksn}"

    @staticmethod
    def _ibm_fields(check_length: int, account: str, decimalization_table: str, validation_data: str) -> str:
        """The IBM 3624 data of DA, EA, GO and DE: check length, account, decimalization table, validation data."""
        return f"{check_length:02d}{account}{decimalization_table}{validation_data}"

    async def _translate(
        self, command: str, src: str, zpk: str, pin_block: str, account: str, fmts: str, pin_length_max: int
    ) -> PinTranslation:
        data = await self._ok(command, f"{src}{zpk}{pin_length_max:02d}{pin_block}{fmts}{account}")
        return self._pin_translation(data)

    async def translate_pin_tpk_to_zpk(
        self,
        *,
        tpk: str,
        zpk: str,
        pin_block: str,
        account: str,
        source_format: str = "01",
        destination_format: str = "01",
        pin_length_max: int = 12,
    ) -> PinTranslation:
        """CA: a terminal's PIN block (under its TPK) re-encrypted under a zone PIN key."""
        fmts = source_format + destination_format
        return await self._translate("CA", tpk, zpk, pin_block, account, fmts, pin_length_max)

    async def translate_pin_zpk_to_zpk(
        self,
        *,
        source_zpk: str,
        destination_zpk: str,
        pin_block: str,
        account: str,
        source_format: str = "01",
        destination_format: str = "01",
        pin_length_max: int = 12,
    ) -> PinTranslation:
        """CC: a PIN block from one zone to another."""
        fmts = source_format + destination_format
        return await self._translate(
            "CC", source_zpk, destination_zpk, pin_block, account, fmts, pin_length_max
        )

    async def translate_pin_dukpt_to_zpk(
        self,
        *,
        bdk: str,
        zpk: str,
        ksn: str,
        pin_block: str,
        account: str,
        destination_format: str = "01",
        ksn_descriptor: str = "A05",
    ) -> PinTranslation:
        """CI: a DUKPT-encrypted PIN block (ISO format 0) re-encrypted under a ZPK."""
        data = await self._ok(
            "CI", f"{bdk}{zpk}{ksn_descriptor}{ksn}{pin_block}{destination_format}{account}"
        )
        return self._pin_translation(data)

    async def translate_pin_tpk_to_lmk(
        self, *, tpk: str, pin_block: str, account: str, pin_block_format: str = "01"
    ) -> str:
        """JC: a terminal's PIN block (under its TPK) as a PIN under the LMK, for PVV/offset generation."""
        return await self._ok("JC", f"{tpk}{pin_block}{pin_block_format}{account}")

    async def translate_pin_zpk_to_lmk(
        self, *, zpk: str, pin_block: str, account: str, pin_block_format: str = "01"
    ) -> str:
        """JE: a PIN block under a ZPK as a PIN under the LMK, for PVV/offset generation."""
        return await self._ok("JE", f"{zpk}{pin_block}{pin_block_format}{account}")

    async def generate_pvv(self, *, pvk: str, pin_under_lmk: str, account: str, pvki: int) -> str:
        """DG: the Visa PVV of a PIN under the LMK."""
        return await self._ok("DG", f"{pvk}{pin_under_lmk}{account}{pvki}")

    async def generate_ibm_offset(
        self,
        *,
        pvk: str,
        pin_under_lmk: str,
        account: str,
        decimalization_table: str,
        validation_data: str,
        check_length: int,
    ) -> str:
        """DE: the IBM 3624 offset of a PIN under the LMK, without the F padding."""
        ibm = self._ibm_fields(check_length, account, decimalization_table, validation_data)
        data = await self._ok("DE", f"{pvk}{pin_under_lmk}{ibm}")
        return data.rstrip("F")

    async def verify_pin_pvv_dukpt(
        self,
        *,
        bdk: str,
        pvk: str,
        ksn: str,
        pin_block: str,
        account: str,
        pvki: int,
        pvv: str,
        pin_block_format: str = "01",
        ksn_descriptor: str = "A05",
    ) -> bool:
        """GQ: Visa PVV verification of a PIN block under the DUKPT PIN key of `ksn` (mode 0)."""
        keys = self._dukpt_key_fields(bdk, pvk, ksn_descriptor, ksn)
        return await self._verified("GQ", f"{keys}{pin_block}{pin_block_format}{account}{pvki}{pvv}")

    async def verify_pin_ibm_dukpt(
        self,
        *,
        bdk: str,
        pvk: str,
        ksn: str,
        pin_block: str,
        account: str,
        offset: str,
        decimalization_table: str,
        validation_data: str,
        check_length: int,
        pin_block_format: str = "01",
        ksn_descriptor: str = "A05",
    ) -> bool:
        """GO: IBM 3624 offset verification of a PIN block under the DUKPT PIN key of `ksn` (mode 0)."""
        keys = self._dukpt_key_fields(bdk, pvk, ksn_descriptor, ksn)
        ibm = self._ibm_fields(check_length, account, decimalization_table, validation_data)
        return await self._verified("GO", f"{keys}{pin_block}{pin_block_format}{ibm}{offset.ljust(12, 'F')}")

    async def verify_pin_pvv(
        self,
        *,
        pin_key: str,
        pvk: str,
        pin_block: str,
        account: str,
        pvki: int,
        pvv: str,
        pin_block_format: str = "01",
        interchange: bool = False,
    ) -> bool:
        """DC (terminal PIN under a TPK) or EC (interchange, under a ZPK): Visa PVV verification."""
        command = "EC" if interchange else "DC"
        return await self._verified(
            command, f"{pin_key}{pvk}{pin_block}{pin_block_format}{account}{pvki}{pvv}"
        )

    async def verify_pin_ibm(
        self,
        *,
        pin_key: str,
        pvk: str,
        pin_block: str,
        account: str,
        offset: str,
        decimalization_table: str,
        validation_data: str,
        check_length: int,
        pin_block_format: str = "01",
        pin_length_max: int = 12,
        interchange: bool = False,
    ) -> bool:
        """DA (terminal) or EA (interchange): IBM 3624 offset verification."""
        command = "EA" if interchange else "DA"
        ibm = self._ibm_fields(check_length, account, decimalization_table, validation_data)
        return await self._verified(
            command,
            f"{pin_key}{pvk}{pin_length_max:02d}{pin_block}{pin_block_format}{ibm}{offset.ljust(12, 'F')}",
        )

    # --- card verification values and MACs ---

    async def generate_cvv(self, *, cvk: str, pan: str, expiry_yymm: str, service_code: str) -> str:
        return await self._ok("CW", f"{cvk}{pan};{expiry_yymm}{service_code}")

    async def verify_cvv(self, *, cvk: str, pan: str, expiry_yymm: str, service_code: str, cvv: str) -> bool:
        """CY: True when `cvv` is right for the card data."""
        return await self._verified("CY", f"{cvk}{cvv}{pan};{expiry_yymm}{service_code}")

    @staticmethod
    def _mac_fields(key: str, key_type: str, data: bytes, algorithm: int, padding: int, mac_hex: int) -> str:
        size = "0" if mac_hex == 8 else "1"
        return f"00{size}{algorithm}{padding}{key_type}{key}{len(data):04X}{data.decode('latin-1')}"

    async def generate_mac(
        self,
        *,
        key: str,
        data: bytes,
        key_type: str = "008",
        algorithm: int = 3,
        padding: int = 1,
        mac_hex: int = 16,
    ) -> str:
        """M6: ISO 9797-1 MAC (algorithm 1 or 3, padding 1 or 2) of `data` under a TAK (003) or ZAK (008)."""
        return await self._ok("M6", self._mac_fields(key, key_type, data, algorithm, padding, mac_hex))

    async def verify_mac(
        self,
        *,
        key: str,
        data: bytes,
        mac: str,
        key_type: str = "008",
        algorithm: int = 3,
        padding: int = 1,
    ) -> bool:
        """M8: True when `mac` (8 or 16 hex digits) is the MAC of `data`."""
        fields = self._mac_fields(key, key_type, data, algorithm, padding, len(mac)) + mac
        return await self._verified("M8", fields)

    # --- data encryption ---

    @staticmethod
    def _data_fields(key: str, key_type: str, data: bytes, mode: str, iv: bytes) -> str:
        if mode not in ("ecb", "cbc"):
            raise ValueError("mode must be 'ecb' or 'cbc'")
        if mode == "cbc" and len(iv) != 8:
            raise ValueError("CBC needs an 8-byte IV")
        mode_flag = "01" if mode == "cbc" else "00"
        iv_field = iv.hex().upper() if mode == "cbc" else ""
        text = data.hex().upper()
        # Hex in and out (format flags 1 and 1): the frame stays printable whatever the data bytes.
        return f"{mode_flag}11{key_type}{key}{iv_field}{len(text):04X}{text}"

    @staticmethod
    def _data_result(command: str, response: str, mode: str) -> bytes:
        body = response[16:] if mode == "cbc" else response
        try:
            length = int(body[:4], 16)
            out = bytes.fromhex(body[4 : 4 + length])
        except ValueError:
            raise HsmTransportError(f"HSM response to {command} is malformed") from None
        if len(out) * 2 != length:
            raise HsmTransportError(f"HSM response to {command} is malformed")
        return out

    async def encrypt_data(
        self, *, key: str, data: bytes, mode: str = "cbc", iv: bytes = bytes(8), key_type: str = "00A"
    ) -> bytes:
        """M0: `data` (whole 8-byte blocks) encrypted under a ZEK (00A) or DEK (00B) given under the LMK."""
        response = await self._ok("M0", self._data_fields(key, key_type, data, mode, iv))
        return self._data_result("M0", response, mode)

    async def decrypt_data(
        self, *, key: str, data: bytes, mode: str = "cbc", iv: bytes = bytes(8), key_type: str = "00A"
    ) -> bytes:
        """M2: the clear data behind a cryptogram made by `encrypt_data` with the same key, mode and IV."""
        response = await self._ok("M2", self._data_fields(key, key_type, data, mode, iv))
        return self._data_result("M2", response, mode)
