"""`loadgen`: many terminals against the switch at a target rate, then TPS and latency percentiles.

Each terminal is its own TCP connection that signs on and exchanges keys first, through trio (a
declined exchange is tolerated: PIN transactions then go without a PIN block). Then one loop without
trio runs every connection (`simulators.load_engine`, which says why): requests follow a weighted mix
(`purchase=90,balance=10`), are paced to `--rate` per second overall (0 = as fast as the in-flight
limit allows) and stop by themselves after `--duration` seconds or `--count` requests.
Demo cards are spread over the terminals so no two terminals hammer one account. Latency is kept as
sorted samples (bounded by `SAMPLES_MAX`); percentiles use the nearest-rank rule.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, TextIO

import trio

from simulators.load_engine import Engine, Lane
from simulators.messages import (
    PIN_REQUIRED,
    Card,
    ConnectionFailed,
    SimulatorError,
    TerminalIdentity,
    TransactionRequest,
    TxnType,
    demo_card,
    parse_amount,
    parse_key,
    verify_mac,
)
from simulators.terminal import CODEC, FRAME_BYTES_MAX, TerminalClient, leaves, open_terminal
from specs import demo
from specs.demo_networks import NETWORK_CARD_COUNT, NETWORK_SPECIAL_CARDS, NETWORKS
from switch.iso.codec import Packet
from switch.iso.message import Message

__all__ = ["Mix", "Stats", "main", "parse_mix", "percentile"]

SAMPLES_MAX = 5_000_000  # ~40 MB of floats: a 10-minute run at 8,000 TPS
TERMINALS_MAX = len(demo.POS_TERMINALS)
IN_FLIGHT_MAX = 1000
DURATION_S_MAX = 24 * 3600
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
BAD_MAC = "bad_mac"  # counted in place of the response code: a response MAC that does not verify
# Transactions loadgen can generate without an earlier result to refer to.
_MIXABLE = frozenset(
    {
        TxnType.PURCHASE,
        TxnType.CASHBACK,
        TxnType.REFUND,
        TxnType.PREAUTH,
        TxnType.BALANCE,
        TxnType.WITHDRAWAL,
        TxnType.TRANSFER,
        TxnType.LOAD,
        TxnType.ECHO,
    }
)
_NETWORK = frozenset({TxnType.ECHO})


@dataclass(frozen=True, slots=True)
class Mix:
    """Transaction types with integer weights; `pick` draws one in proportion."""

    types: tuple[TxnType, ...]
    weights: tuple[int, ...]

    def pick(self, rng: random.Random) -> TxnType:
        if len(self.types) == 1:
            return self.types[0]
        return rng.choices(self.types, cum_weights=self._cumulative(), k=1)[0]

    def _cumulative(self) -> list[int]:
        total, out = 0, []
        for weight in self.weights:
            total += weight
            out.append(total)
        return out


def parse_mix(text: str) -> Mix:
    """`purchase=90,balance=10` (a bare name weighs 1). Raises SimulatorError naming the bad part."""
    types: list[TxnType] = []
    weights: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, eq, weight_text = part.partition("=")
        try:
            txn = TxnType(name.strip())
        except ValueError:
            raise SimulatorError(f"mix: unknown transaction type {name!r}") from None
        if txn not in _MIXABLE:
            allowed = ", ".join(sorted(t.value for t in _MIXABLE))
            raise SimulatorError(f"mix: {txn.value} cannot be generated (allowed: {allowed})")
        if txn in types:
            raise SimulatorError(f"mix: {txn.value} given twice")
        weight = 1
        if eq:
            if not weight_text.strip().isdigit():
                raise SimulatorError(f"mix: weight of {txn.value} must be a whole number")
            weight = int(weight_text)
        if weight <= 0:
            raise SimulatorError(f"mix: weight of {txn.value} must be positive")
        types.append(txn)
        weights.append(weight)
    if not types:
        raise SimulatorError("mix is empty")
    return Mix(tuple(types), tuple(weights))


def percentile(sorted_samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of ascending samples (p100 is the maximum); NaN when there are none."""
    if not 0 < pct <= 100:
        raise ValueError("percentile must be in (0, 100]")
    if not sorted_samples:
        return math.nan
    # Exact rational arithmetic: 99.9 / 100 * 1000 in floats is 999.0000000000001, one rank too high.
    rank = math.ceil(Fraction(repr(pct)) * len(sorted_samples) / 100)
    return sorted_samples[max(rank, 1) - 1]


@dataclass
class Stats:
    """Counters of one run. Latencies of answered requests only; timeouts are counted apart."""

    started_s: float = field(default_factory=time.perf_counter)
    sent: int = 0
    answered: int = 0
    timeouts: int = 0
    errors: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    dropped_samples: int = 0

    def reset(self) -> None:
        """Forget everything counted so far (the end of a warm-up)."""
        self.started_s = time.perf_counter()
        self.sent = self.answered = self.timeouts = self.errors = self.dropped_samples = 0
        self.codes.clear()
        self.latencies_ms.clear()

    def record(self, code: str | None, latency_ms: float) -> None:
        if code is None:
            self.timeouts += 1
            return
        self.answered += 1
        self.codes[code] += 1
        if len(self.latencies_ms) < SAMPLES_MAX:
            self.latencies_ms.append(latency_ms)
        else:
            self.dropped_samples += 1

    def summary(self, elapsed_s: float) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "elapsed_s": round(elapsed_s, 3),
            "sent": self.sent,
            "answered": self.answered,
            "timeouts": self.timeouts,
            "errors": self.errors,
            "tps": round(self.answered / elapsed_s, 1) if elapsed_s > 0 else 0.0,
            "latency_ms": {
                **{f"p{p:g}": _round(percentile(ordered, p)) for p in PERCENTILES},
                "max": _round(ordered[-1]) if ordered else None,
                "mean": _round(sum(ordered) / len(ordered)) if ordered else None,
            },
            "response_codes": dict(sorted(self.codes.items())),
        }


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


@dataclass(frozen=True, slots=True)
class Plan:
    host: str
    port: int
    terminals: int
    mix: Mix
    rate_per_s: float  # 0: unpaced
    duration_s: float | None
    count: int | None
    in_flight: int
    amount_minor: int
    timeout_s: float
    tmk: bytes
    seed: int | None
    mac: bool
    card_bin: str | None = None  # a network simulator's BIN (specs.demo_networks) instead of ours
    warmup_s: float = 0.0  # load sent first and not counted: cold caches, first connections


def _cards_for(terminal_index: int, terminals: int, card_bin: str | None = None) -> list[Card]:
    """This terminal's share of the ordinary demo debit cards, or of a network simulator's cards of
    `card_bin` (special cards are left out)."""
    if card_bin is None:
        bin6, count = demo.DEBIT_BIN, demo.DEBIT_CARD_COUNT
        special = {index for b, index in demo.SPECIAL_CARDS.values() if b == demo.DEBIT_BIN}
    else:
        bin6, count = card_bin, NETWORK_CARD_COUNT
        first = any(n.bins[0] == card_bin for n in NETWORKS)  # where the special cards are
        special = {index for _, index in NETWORK_SPECIAL_CARDS.values()} if first else set()
    pool = [i for i in range(1, count + 1) if i not in special]
    share = pool[terminal_index::terminals][:20] or pool[:1]
    return [demo_card(demo.demo_pan(bin6, i)) for i in share]


def _prepaid_cards(terminal_index: int, terminals: int) -> list[Card]:
    indexes = list(range(1, demo.PREPAID_CARD_COUNT + 1))[terminal_index::terminals][:10] or [1]
    return [demo_card(demo.demo_pan(demo.PREPAID_BIN, i)) for i in indexes]


def _request_for(txn: TxnType, plan: Plan, pin_ok: bool) -> TransactionRequest:
    if txn in _NETWORK:
        return TransactionRequest(txn)
    pin = demo.DEMO_PIN if pin_ok and txn in PIN_REQUIRED | {TxnType.PURCHASE, TxnType.CASHBACK} else None
    amount = 0 if txn is TxnType.BALANCE else plan.amount_minor
    return TransactionRequest(
        type=txn,
        amount_minor=amount,
        cashback_minor=plan.amount_minor if txn is TxnType.CASHBACK else 0,
        from_account="10" if txn is TxnType.TRANSFER else "00",
        to_account="20" if txn is TxnType.TRANSFER else "00",
        pin=pin,
    )


class _Gate:
    """Counts the terminals that have signed on and exchanged keys; `all_ready` once every one has."""

    def __init__(self, terminals: int) -> None:
        self.waiting = terminals
        self.all_ready = trio.Event()

    def arrive(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.all_ready.set()


async def _drive_terminal(
    index: int, plan: Plan, gate: _Gate, rng: random.Random, lanes: list[Lane | None], done: trio.Event
) -> None:
    """Connect, sign on and exchange keys, hand the connection to the load loop as a lane, and keep it
    open until the run is `done`."""
    identity = TerminalIdentity(terminal_id=demo.POS_TERMINALS[index], merchant_id=demo.MERCHANT_ID)
    async with open_terminal(
        plan.host, plan.port, identity=identity, tmk=plan.tmk, timeout_s=plan.timeout_s, mac=plan.mac
    ) as terminal:
        sign_on = await terminal.sign_on()
        if sign_on.response_code is None:
            raise ConnectionFailed(f"terminal {identity.terminal_id}: no answer to sign-on")
        exchange = await terminal.key_exchange()
        lanes[index] = _lane(terminal, index, plan, rng, pin_ok=exchange.approved)
        gate.arrive()
        await done.wait()


def _lane(terminal: TerminalClient, index: int, plan: Plan, rng: random.Random, *, pin_ok: bool) -> Lane:
    """The terminal's connection as a lane of the load loop: its requests by the mix, over its cards."""
    debit_cards = _cards_for(index, plan.terminals, plan.card_bin)
    prepaid_cards = _prepaid_cards(index, plan.terminals)
    templates = None if plan.mac else _Templates(terminal)

    def next_request() -> tuple[str, bytes]:
        txn = plan.mix.pick(rng)
        card = rng.choice(prepaid_cards if txn is TxnType.LOAD else debit_cards)
        request = _request_for(txn, plan, pin_ok)
        template = templates.get(request, card) if templates is not None else None
        if template is None:
            message = terminal.build(request, card)
            return message[11], CODEC.encode_frame(message, terminal.tpdu)
        return template.fill(terminal.next_stan(), datetime.now(UTC), datetime.now())

    def parse(payload: bytes) -> tuple[str | None, str | None]:
        message = _stan_and_code(payload)
        if message is None:
            decoded = CODEC.decode_payload(payload)  # IsoError ends the lane, as it ends a terminal
            if not isinstance(decoded, Packet):
                return None, None  # a keep-alive
            message = decoded.message
            # A response MAC is checked whether or not --mac is given: one that does not verify under the
            # TAK is counted apart, whatever its response code says.
            keys = terminal.keys
            if message.get(64) is not None and keys is not None and not verify_mac(CODEC, message, keys.tak):
                return message.get(11), BAD_MAC
        return message.get(11), message.get(39)

    stream = terminal.stream
    assert isinstance(stream, trio.SocketStream)
    return Lane.over(
        stream.socket.fileno(),
        name=terminal.identity.terminal_id,
        framer=CODEC.framer(frame_bytes_max=FRAME_BYTES_MAX),
        next_request=next_request,
        parse=parse,
    )


_HEADER_BYTES = 5  # the terminal dialect's TPDU
_SPEC = CODEC.dialect.iso_spec


def _stan_and_code(payload: bytes) -> Message | None:
    """A response's MTI, STAN (11) and code (39), read by walking its fields without decoding them.

    The terminal dialect has ASCII lengths and ASCII or binary data, so each field's size is known from
    its length prefix or the spec. None (decode it in full) for anything unusual: a MAC to check, a
    field the walk cannot size, a frame cut short.
    """
    body = payload[_HEADER_BYTES:]
    try:
        mti = body[:4].decode("ascii")
        bitmap = int.from_bytes(body[4:12], "big")
        pos, top = 12, 64
        if bitmap >> 63:
            bitmap = (bitmap << 64) | int.from_bytes(body[12:20], "big")
            pos, top = 20, 128
        if (bitmap >> (top - 64)) & 1 or (top == 128 and bitmap & 1):
            return None  # a MAC (64 or 128): the full path checks it
        found: dict[int, str] = {}
        for number in range(2, top + 1):
            if not (bitmap >> (top - number)) & 1:
                continue
            spec = _SPEC[str(number)]
            prefix = spec["len_type"]
            if prefix:
                length = int(body[pos : pos + prefix])
                pos += prefix
            else:
                length = spec["max_len"]
            if number in (11, 39):
                found[number] = body[pos : pos + length].decode("ascii")
                if number == 39:
                    break
            pos += length
        if 11 not in found or pos > len(body):
            return None
        return Message(mti, found)
    except (ValueError, KeyError, UnicodeDecodeError):
        return None


# Fields that differ between two requests of one terminal for one card and type: everything else of
# the encoded frame is the same, PIN block included (ISO format 0 depends only on PIN and PAN).
_VARYING_FIELDS = (7, 11, 12, 13)


@dataclass(frozen=True, slots=True)
class _Template:
    """One request encoded once, with the byte ranges of its per-request fields (7, 11, 12, 13)."""

    frame: bytes
    spans: dict[int, tuple[int, int]]

    def fill(self, stan: str, now_utc: datetime, now_local: datetime) -> tuple[str, bytes]:
        values = {
            7: now_utc.strftime("%m%d%H%M%S"),
            11: stan,
            12: now_local.strftime("%H%M%S"),
            13: now_local.strftime("%m%d"),
        }
        frame = bytearray(self.frame)
        for number, (start, stop) in self.spans.items():
            frame[start:stop] = values[number].encode("ascii")
        return stan, bytes(frame)


class _Templates:
    """Encoded requests per (type, card), so that the generator spends its CPU on load, not on encoding.

    Building a request (track 2 with its CVV, the PIN block, the ISO 8583 encoding) costs several times
    more than sending it; on a 2-core machine that CPU is taken from the switch under test. A template
    is made by encoding the request once and locating its varying fields: each is re-encoded with every
    digit changed, and the bytes that differ are its span. A request whose varying fields cannot be
    located that way (none should) is sent the ordinary way.
    """

    def __init__(self, terminal: TerminalClient) -> None:
        self._terminal = terminal
        self._cache: dict[tuple[TransactionRequest, str], _Template | None] = {}

    def get(self, request: TransactionRequest, card: Card) -> _Template | None:
        key = (request, card.pan)
        if key not in self._cache:
            self._cache[key] = self._make(request, card)
        return self._cache[key]

    def _make(self, request: TransactionRequest, card: Card) -> _Template | None:
        terminal = self._terminal
        if terminal.pin_pad is not None:
            return None  # DUKPT: every PIN block is under a new key
        message = terminal.build(request, card)
        frame = CODEC.encode_frame(message, terminal.tpdu)
        spans: dict[int, tuple[int, int]] = {}
        for number in _VARYING_FIELDS:
            value = message.get(number)
            if value is None:
                continue
            changed = "".join("1" if ch == "0" else "0" for ch in value)
            other = CODEC.encode_frame(message.with_fields({number: changed}), terminal.tpdu)
            differ = [i for i, (a, b) in enumerate(zip(frame, other, strict=True)) if a != b]
            if len(differ) != len(value) or differ[-1] - differ[0] + 1 != len(value):
                return None
            spans[number] = (differ[0], differ[-1] + 1)
        return _Template(frame, spans)


def _progress_line(stats: Stats, elapsed_s: float, last_answered: int) -> str:
    return (
        f"t={elapsed_s:5.1f}s sent={stats.sent} answered={stats.answered} "
        f"tps={stats.answered - last_answered} timeouts={stats.timeouts} errors={stats.errors}"
    )


class _Progress:
    """One line a second while the load runs (called by the load loop)."""

    def __init__(self, stats: Stats, out: TextIO, json_mode: bool) -> None:
        self.stats, self.out, self.json_mode = stats, out, json_mode
        self.last = 0

    def __call__(self, elapsed_s: float) -> None:
        stats = self.stats
        if stats.answered < self.last:
            self.last = 0  # the warm-up ended: the counts started again
        if self.json_mode:
            line = json.dumps(
                {
                    "progress": True,
                    "elapsed_s": round(elapsed_s, 1),
                    "sent": stats.sent,
                    "answered": stats.answered,
                    "tps": stats.answered - self.last,
                }
            )
        else:
            line = _progress_line(stats, elapsed_s, self.last)
        self.last = stats.answered
        print(line, file=self.out, flush=True)


async def run_load(plan: Plan, *, progress_out: TextIO, json_mode: bool) -> dict[str, Any]:
    """Connect every terminal, then run the mix until the duration or count is spent; the summary."""
    stats = Stats()
    rng = random.Random(plan.seed)
    gate = _Gate(plan.terminals)
    lanes: list[Lane | None] = [None] * plan.terminals
    done = trio.Event()
    async with trio.open_nursery() as terminals:
        for index in range(plan.terminals):
            seed = rng.getrandbits(64)
            terminals.start_soon(_drive_terminal, index, plan, gate, random.Random(seed), lanes, done)
        with trio.fail_after(plan.timeout_s + 5):
            await gate.all_ready.wait()
        engine = Engine(
            [lane for lane in lanes if lane is not None],
            stats,
            rate_per_s=plan.rate_per_s,
            in_flight=plan.in_flight,
            timeout_s=plan.timeout_s,
            duration_s=plan.duration_s,
            count=plan.count,
            warmup_s=plan.warmup_s,
            progress=_Progress(stats, progress_out, json_mode),
        )
        elapsed = engine.run()  # holds this thread until the run ends: the terminals' tasks wait
        done.set()
    for lane in engine.lanes:
        if lane.closed_reason is not None:
            print(f"loadgen: terminal {lane.name}: {lane.closed_reason}", file=sys.stderr)
    summary = stats.summary(elapsed)
    summary.update(
        {
            "terminals": plan.terminals,
            "in_flight_per_terminal": plan.in_flight,
            "rate_target_per_s": plan.rate_per_s or None,
            "warmup_s": plan.warmup_s,
        }
    )
    return summary


def _human_summary(summary: dict[str, Any]) -> str:
    lat = summary["latency_ms"]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    codes = " ".join(f"{code}:{count}" for code, count in summary["response_codes"].items()) or "none"
    return "\n".join(
        [
            f"terminals {summary['terminals']}, {summary['sent']} sent, {summary['answered']} answered, "
            f"{summary['timeouts']} timeouts, {summary['errors']} errors in {summary['elapsed_s']:.2f} s",
            f"throughput {summary['tps']:.1f} TPS",
            f"latency ms  p50 {ms(lat['p50'])}  p90 {ms(lat['p90'])}  p99 {ms(lat['p99'])}  "
            f"p99.9 {ms(lat['p99.9'])}  max {ms(lat['max'])}",
            f"response codes  {codes}",
        ]
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="loadgen",
        description="Load generator: N demo POS terminals sending a transaction mix to the switch.",
    )
    p.add_argument("--host", default="127.0.0.1", help="switch address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8583)
    p.add_argument("--terminals", type=int, default=4, help=f"connections, 1..{TERMINALS_MAX} (default 4)")
    p.add_argument(
        "--mix", default="purchase=90,balance=10", help="weighted types, e.g. purchase=90,balance=10"
    )
    p.add_argument("--rate", type=float, default=100.0, help="requests per second overall; 0 = max rate")
    p.add_argument("--duration", type=float, default=None, help="seconds to run (default 10 unless --count)")
    p.add_argument("--count", type=int, default=None, help="requests to send in total")
    p.add_argument(
        "--warmup",
        type=float,
        default=0.0,
        help="seconds of load sent first and not counted (caches fill, connections settle); with --duration",
    )
    p.add_argument("--in-flight", type=int, default=4, help="requests in flight per connection (default 4)")
    p.add_argument("--amount", default="1.00", help="amount of each financial request (default 1.00)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each response")
    p.add_argument("--tmk", default=None, help="terminal master key, 32 hex digits (default: the demo TMK)")
    p.add_argument("--mac", action="store_true", help="MAC requests with the TAK")
    p.add_argument("--seed", type=int, default=None, help="random seed for the mix and the cards")
    p.add_argument("--json", action="store_true", help="JSON progress lines and a JSON summary")
    p.add_argument(
        "--card-bin",
        default=None,
        choices=sorted(b for n in NETWORKS for b in n.bins),
        help="use a network simulator's cards of this BIN (e.g. 476173, Visa) instead of the demo bank's",
    )
    return p


def plan_from(args: argparse.Namespace) -> Plan:
    if not 1 <= args.terminals <= TERMINALS_MAX:
        raise SimulatorError(f"--terminals must be 1 to {TERMINALS_MAX} (the demo POS terminals)")
    if not 1 <= args.in_flight <= IN_FLIGHT_MAX:
        raise SimulatorError(f"--in-flight must be 1 to {IN_FLIGHT_MAX}")
    if args.rate < 0 or not math.isfinite(args.rate):
        raise SimulatorError("--rate must be 0 (max) or a positive number")
    duration = args.duration
    if duration is None and args.count is None:
        duration = 10.0
    if duration is not None and not 0 < duration <= DURATION_S_MAX:
        raise SimulatorError(f"--duration must be more than 0 and at most {DURATION_S_MAX} s")
    if args.count is not None and args.count < 1:
        raise SimulatorError("--count must be positive")
    if args.warmup < 0 or not math.isfinite(args.warmup) or args.warmup > DURATION_S_MAX:
        raise SimulatorError("--warmup must be 0 or more seconds")
    if args.warmup and duration is None:
        raise SimulatorError("--warmup goes with --duration, not --count")
    if not 0 < args.timeout <= 600:
        raise SimulatorError("--timeout must be more than 0 and at most 600 s")
    return Plan(
        host=args.host,
        port=args.port,
        terminals=args.terminals,
        mix=parse_mix(args.mix),
        rate_per_s=args.rate,
        duration_s=duration,
        count=args.count,
        in_flight=args.in_flight,
        amount_minor=parse_amount(args.amount),
        timeout_s=args.timeout,
        tmk=parse_key(args.tmk or demo.DEMO_TMK_HEX, "--tmk"),
        seed=args.seed,
        mac=args.mac,
        card_bin=args.card_bin,
        warmup_s=args.warmup,
    )


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Exit 0 when every request was answered, 1 when some timed out or failed, 2 bad usage, 3 no connection."""
    args = build_parser().parse_args(argv)
    stream = out or sys.stdout
    try:
        plan = plan_from(args)
        try:
            summary = trio.run(lambda: run_load(plan, progress_out=stream, json_mode=args.json))
        except BaseExceptionGroup as group:
            # Every terminal runs in the nursery: report the first terminal's error, as a single run would.
            known = [e for e in leaves(group) if isinstance(e, SimulatorError | trio.TooSlowError)]
            if not known:
                raise
            raise known[0] from None
    except SimulatorError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, ConnectionFailed) else 2
    except trio.TooSlowError:
        print("loadgen: the terminals did not all sign on in time", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    print(json.dumps(summary) if args.json else _human_summary(summary), file=stream, flush=True)
    return 0 if summary["timeouts"] == 0 and summary["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
