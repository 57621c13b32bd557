"""A small switch for simulator tests: a real trio TCP server answering per docs/transactions.md.

It speaks the terminal dialect with the same codec as switchd, answers sign-on/echo, runs a key
exchange (new TPK/TAK under the demo TMK, with check values), checks MACs (63) and PINs (55) with the
clear keys, assigns RRNs and auth codes, keeps balances for field 54, and finds the originals of voids,
completions and reversals (25 when unknown). It is a test double, not a second switch: no limits,
no lists, one in-memory balance per card.
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field

import trio

from hsm.crypto.des import kcv_tdes, tdes_ecb_encrypt, with_odd_parity
from hsm.crypto.errors import CryptoError
from hsm.crypto.mac import iso9797_mac
from hsm.crypto.pinblock import decrypt_pin_block
from specs import demo
from switch.iso.codec import Codec, Packet
from switch.iso.headers import Tpdu
from switch.iso.message import Message

CODEC = Codec("terminal")
OPENING_BALANCE = 1_000_000


@dataclass
class FakeSwitch:
    tmk: bytes = bytes.fromhex(demo.DEMO_TMK_HEX)
    corrupt_kcv: bool = False
    corrupt_response_mac: bool = False  # MAC responses with the wrong key
    key_exchange_code: str = "00"
    keys: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)  # terminal id -> (TPK, TAK)
    requests: list[Message] = field(default_factory=list)
    balances: dict[str, int] = field(default_factory=dict)
    by_rrn: dict[str, Message] = field(default_factory=dict)
    by_identity: dict[tuple[str, str, str], Message] = field(default_factory=dict)
    _rrn: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    port: int = 0
    ignore_processing_codes: set[str] = field(default_factory=set)  # requests left unanswered (timeouts)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        framer = CODEC.framer(frame_bytes_max=8192)
        async with stream:
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:
                    return
                if not data:
                    return
                framer.receive_data(bytes(data))
                for payload in framer:
                    packet = CODEC.decode_payload(payload)
                    assert isinstance(packet, Packet)
                    if (
                        packet.message.mti[:2] != "04"
                        and packet.message.get(3) in self.ignore_processing_codes
                    ):
                        self.requests.append(packet.message)
                        continue
                    response = self.answer(packet.message)
                    header = packet.header.reply() if isinstance(packet.header, Tpdu) else None
                    await stream.send_all(CODEC.encode_frame(response, header))

    # -- the contract, simplified -----------------------------------------------------------------------

    def _mac(self, message: Message, tak: bytes) -> str:
        body = CODEC.encode_message(message.with_fields({64: "00" * 8}))
        return iso9797_mac(tak, body[:-8], 3, 1).hex().upper()

    def answer(self, request: Message) -> Message:
        self.requests.append(request)
        response = self._answer(request)
        keys = self.keys.get(request.get(41) or "")
        if request.get(64) is not None and keys is not None:
            tak = bytes(16) if self.corrupt_response_mac else keys[1]
            response = response.with_fields({64: self._mac(response, tak)})
        return response

    def _answer(self, request: Message) -> Message:
        if request.mti == "0800":
            code = request.get(70)
            if code == "101":
                return self._key_exchange(request)
            return CODEC.response(request, response_code="00" if code in ("001", "002", "301") else "40")
        tpk, tak = self.keys.get(request.get(41) or "", (bytes(16), bytes(16)))
        if request.get(64) is not None and request[64] != self._mac(request, tak):
            return CODEC.response(request, response_code="63")
        pan = request.get(2) or (request.get(35) or "").split("=")[0]
        if request.get(52) is not None:
            try:
                pin = decrypt_pin_block(bytes.fromhex(request[52]), pan, 0, tpk)
            except CryptoError:
                pin = None
            if pin != demo.DEMO_PIN:
                return CODEC.response(request, response_code="55")
        kind = (request.get(3) or "")[:2]
        amount = int(request.get(4) or "0")
        balance = self.balances.setdefault(pan, OPENING_BALANCE)
        updates: dict[int, str | None] = {}
        if request.mti[:2] == "04" or kind == "02" or request.mti == "0220" or request.get(25) == "06":
            original = self.by_rrn.get(request.get(37) or "") if request.get(37) else None
            f90 = request.get(90)
            if original is None and f90 is not None:
                original = self.by_identity.get((f90[:4], f90[4:10], f90[10:20]))
            if original is None:
                # The contract: an unknown original is 25, except that a reversal is acknowledged 00.
                return CODEC.response(request, response_code="00" if request.mti[:2] == "04" else "25")
        elif kind in ("00", "01", "09"):
            if amount > balance:
                return CODEC.response(request, response_code="51")
            self.balances[pan] = balance - amount
        elif kind == "31":
            group = f"{demo.CURRENCY:03d}C{balance:012d}"
            updates[54] = f"0001{group}0002{group}"
        rrn = f"{next(self._rrn):012d}"
        # Auth codes count up like the RRNs, so that a test searching the output for a PIN cannot
        # trip over a random code that happens to contain its digits.
        updates.update({37: rrn, 38: f"A{int(rrn):05d}"})
        self.by_rrn[rrn] = request
        self.by_identity[(request.mti, request[11], request[7])] = request
        return CODEC.response(request, response_code="00", updates=updates)

    def _key_exchange(self, request: Message) -> Message:
        if self.key_exchange_code != "00":
            return CODEC.response(request, response_code=self.key_exchange_code)
        tpk = with_odd_parity(secrets.token_bytes(16))
        tak = with_odd_parity(secrets.token_bytes(16))
        self.keys[request[41]] = (tpk, tak)
        parts = []
        for tag, key in (("TPK", tpk), ("TAK", tak)):
            kcv = kcv_tdes(key, 6)
            if self.corrupt_kcv:
                kcv = "000000" if kcv != "000000" else "111111"
            parts.append(f"{tag}{tdes_ecb_encrypt(self.tmk, key).hex().upper()}{kcv}")
        return CODEC.response(request, response_code="00", updates={48: "".join(parts)})
