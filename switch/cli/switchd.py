"""`switchd`: the switch daemon's entry point (`switchd run`, `switchd config`)."""

from __future__ import annotations

import argparse
import sys

import trio

from switch.adapters.hsm import HsmSetupError
from switch.cli import workers
from switch.cli.common import load_config_or_exit
from switch.config import describe
from switch.logs import configure_logging, get_logger


def _run(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config, demo=args.demo)
    configure_logging(config.log.level, config.log.format)
    try:
        trio.run(workers.start(config, demo=args.demo, place=_worker_place(args)))
    except KeyboardInterrupt:
        # Ctrl-C while no signal watcher runs: only in the last moment of the exit, after run_switch's
        # watcher ended (it is the first thing run_switch starts and the last it stops).
        get_logger("switchd").warning("interrupted while starting or stopping")
        return 130
    except HsmSetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Our own errors carry safe messages; the traceback goes through the masking processor.
        get_logger("switchd").exception("switchd failed", error=type(exc).__name__)
        return 1
    return 0


def _worker_place(args: argparse.Namespace) -> workers.WorkerPlace | None:
    if args.worker_life_fd is None:
        return None
    if args.worker_slot is None or args.worker_board_fd is None:
        raise SystemExit("error: --worker-life-fd needs --worker-slot and --worker-board-fd")
    return workers.WorkerPlace(
        life_fd=args.worker_life_fd,
        slot=args.worker_slot,
        board_fd=args.worker_board_fd,
        listen_fds=tuple(args.worker_listen_fd),
    )


def _config(args: argparse.Namespace) -> int:
    if args.check:
        load_config_or_exit(args.config, demo=args.demo)
        print("config ok")
        return 0
    for key, env, default, doc in describe():
        print(f"{key:36} {env:40} default={default!r:12} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchd", description="The card switch daemon.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the switch until SIGINT/SIGTERM")
    run.add_argument(
        "--config", help="TOML config file (default: $SWITCH_CONFIG, else ./switch.toml if present)"
    )
    run.add_argument(
        "--demo",
        action="store_true",
        help="demo mode: the public TEST LMK in-process (unless an HSM is configured) and demo cards, "
        "terminals and balances seeded into an empty database (what `make run` does)",
    )
    # Set by a primary switchd for the worker processes it starts (switch/cli/workers.py), not by people.
    run.add_argument("--worker-life-fd", type=int, default=None, help=argparse.SUPPRESS)
    run.add_argument("--worker-slot", type=int, default=None, help=argparse.SUPPRESS)
    run.add_argument("--worker-board-fd", type=int, default=None, help=argparse.SUPPRESS)
    run.add_argument("--worker-listen-fd", type=int, action="append", default=[], help=argparse.SUPPRESS)
    run.set_defaults(func=_run)
    cfg = sub.add_parser("config", help="list every config key, or --check a config file")
    cfg.add_argument("--config", help="TOML config file")
    cfg.add_argument("--check", action="store_true", help="validate the config (file + environment) and exit")
    cfg.add_argument(
        "--demo", action="store_true", help="with --check: as `run --demo` loads it (the demo networks)"
    )
    cfg.set_defaults(func=_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
