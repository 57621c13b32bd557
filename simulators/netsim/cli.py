"""`netsim --network visa|cups|shetab`: run one simulated network until SIGINT or SIGTERM (exit 0).

Flags set the ports, the clearing directory, the key grace period and the fault modes at start (the
same names as the keys of PUT /faults, with dashes). The ready line (a log line with `event_kind`
"ready") names the link and control addresses, so `--port 0 --control-port 0` can be used by tests.
Exit codes: 0 stopped by a signal, 1 cannot listen, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import trio

from simulators.netsim.app import DEFAULT_VAR_DIR, Netsim, NetsimConfig
from simulators.netsim.faults import FAULT_KEYS, FaultError, Faults
from simulators.terminal import leaves
from specs.demo_networks import NETWORKS, network
from switch.logs import configure_logging, get_logger

__all__ = ["main", "parser"]

_FAULT_HELP = {
    "latency_ms": "delay every answer by this many ms",
    "latency_jitter_ms": "plus a uniform 0..N ms",
    "no_answer_share": "share (0-1) of financial requests applied but never answered",
    "late_share": "share answered --late-ms later",
    "late_ms": "extra delay of a late answer (default 5000)",
    "duplicate_share": "share answered twice",
    "decline_share": "share declined with --decline-code before the issuer looks at them",
    "decline_code": "response code of those declines (default 05)",
    "reject_share": "share sent back with a reject header (visa, cups)",
    "drop_after": "close each connection after it has carried N messages",
    "stale_key": "originate PIN blocks under the previous ZPK",
    "bad_kcv": "the first key exchange answer carries a wrong check value",
}


def _share(text: str) -> float:
    return float(text)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="netsim",
        description=(
            "Simulate one interbank network toward the switch: its link (sign-on, echo, key exchange), "
            "its issuer (cards, balances, PINs, declines), its acquirer (POST /originate), fault modes "
            "and a clearing file. Contract and control API: docs/networks.md."
        ),
    )
    p.add_argument("--network", required=True, choices=[n.name for n in NETWORKS], help="which network to be")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="link port (default: the network's demo port; 0: any free port)")
    p.add_argument("--control-port", type=int, help="HTTP control port (default: the network's; 0: any)")
    p.add_argument(
        "--var-dir",
        default=str(DEFAULT_VAR_DIR),
        help=f"clearing files go to <var-dir>/<network>/clearing-YYYYMMDD.csv (default {DEFAULT_VAR_DIR})",
    )
    p.add_argument("--key-grace-s", type=float, default=300.0, help="previous ZPK accepted this long (300)")
    p.add_argument(
        "--keep-key", action="store_true", help="key exchanges repeat the current ZPK until POST /rekey"
    )
    p.add_argument("--seed", type=int, help="seed of the fault draws (default: random)")
    p.add_argument(
        "--originate-timeout-s", type=float, default=10.0, help="wait for the switch's answer (default 10)"
    )
    p.add_argument("--connections-max", type=int, default=16, help="member connections at once (16)")
    p.add_argument("--no-message-log", action="store_true", help="no log line per message (counters stay)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", default="auto", choices=["auto", "json", "console"])
    faults = p.add_argument_group("fault modes (also PUT /faults while running)")
    for key in FAULT_KEYS:
        flag = "--" + key.replace("_", "-")
        default = getattr(Faults(), key)
        if isinstance(default, bool):
            faults.add_argument(flag, action="store_true", dest=key, help=_FAULT_HELP[key])
        elif key.endswith("_share"):
            faults.add_argument(flag, type=_share, dest=key, help=_FAULT_HELP[key])
        elif key == "decline_code":
            faults.add_argument(flag, dest=key, help=_FAULT_HELP[key])
        else:
            faults.add_argument(flag, type=int, dest=key, help=_FAULT_HELP[key])
    return p


def _config(args: argparse.Namespace) -> NetsimConfig:
    # Only the flags given: None for an absent value flag, False for an absent switch (0 is a value).
    changes = {
        key: value for key in FAULT_KEYS if (value := getattr(args, key)) is not None and value is not False
    }
    demo = network(args.network)
    has_header = demo.name != "shetab"
    faults = Faults().updated(changes, has_header=has_header)
    return NetsimConfig(
        network=demo,
        host=args.host,
        port=args.port,
        control_port=args.control_port,
        var_dir=Path(args.var_dir),
        key_grace_s=args.key_grace_s,
        keep_key=args.keep_key,
        faults=faults,
        seed=args.seed,
        originate_timeout_s=args.originate_timeout_s,
        connections_max=args.connections_max,
        log_messages=not args.no_message_log,
        freeze_gc_when_ready=True,
    )


async def _serve(netsim: Netsim) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(netsim.run)
            async for signum in signals:
                netsim.log.info("netsim stopping", signal=signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def main(argv: Sequence[str] | None = None, *, stream: TextIO | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        config = _config(args)
    except FaultError as exc:
        p.error(str(exc))
    if args.key_grace_s < 0 or args.originate_timeout_s <= 0 or args.connections_max < 1:
        p.error("--key-grace-s must be >= 0, --originate-timeout-s > 0 and --connections-max >= 1")
    configure_logging(args.log_level, args.log_format, stream)
    netsim = Netsim(config, log=get_logger("netsim", network=config.network.name))
    try:
        trio.run(_serve, netsim)
    except BaseExceptionGroup as group:
        errors = leaves(group)
        if errors and all(isinstance(exc, OSError) for exc in errors):
            print(f"netsim: cannot listen: {errors[0]}", file=sys.stderr)
            return 1
        raise
    except OSError as exc:
        print(f"netsim: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
