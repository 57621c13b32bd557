"""`hsmd`: create the LMK, run the HSM daemon, and the operator's key utilities.

    hsmd init [--lmk-file var/hsm/lmk.json] [--force]
    hsmd run  [--lmk-file ...] [--test-lmk] [--host 127.0.0.1] [--port 1500] [--header-length 4]
    hsmd key generate --type 001 [--scheme U]
    hsmd key kcv --type 001 KEY
    hsmd key import-components --type 000 [--scheme U] [--components 2]
    hsmd key tr31-wrap --kbpk ZMK --key KEY --key-type 001 [--header B0000P0TE00N0000]
    hsmd key tr31-unwrap --kbpk ZMK --block KEYBLOCK --key-type 001 [--scheme U]

The passphrase comes from HSM_LMK_PASSPHRASE or a prompt. Key utilities print only keys encrypted under
the LMK (or a key block) and check values; clear components are read from a no-echo prompt, never from
the command line (which shells keep in their history). This module alone configures logging: JSON lines
on stdout for the daemon.
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

import structlog
import trio

from hsm.crypto.des import has_odd_parity, kcv_tdes, with_odd_parity
from hsm.crypto.errors import CryptoError
from hsm.crypto.tr31 import tr31_unwrap, tr31_wrap
from hsm.host.processor import HostCommandProcessor
from hsm.host.protocol import FRAME_BYTES_MAX_DEFAULT, HEADER_LENGTH_DEFAULT
from hsm.keys import ZMK, KeyRejected, KeyVault, key_type, random_key
from hsm.lmk import (
    PASSPHRASE_ENV,
    TEST_LMK_WARNING,
    LmkFileError,
    VariantLmk,
    load_lmk_file,
    write_lmk_file,
)
from hsm.server import HsmServer, ServerConfig

__all__ = ["configure_logging", "main"]

LMK_FILE_DEFAULT = Path("var/hsm/lmk.json")
_SCHEME_BYTES = {"Z": 8, "U": 16, "X": 16, "T": 24, "Y": 24}


class CliError(Exception):
    """An operator error; printed without a traceback."""


def configure_logging(stream: TextIO | None = None) -> None:
    """JSON lines with ISO timestamps to `stream` (stdout by default); the daemon's only log setup."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(stream if stream is not None else sys.stdout),
        cache_logger_on_first_use=False,
    )


def _passphrase(confirm: bool) -> str:
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env:
        return from_env
    first = getpass.getpass("LMK passphrase: ")
    if confirm and getpass.getpass("LMK passphrase (again): ") != first:
        raise CliError("passphrases do not match")
    if not first:
        raise CliError("the LMK passphrase must not be empty")
    return first


def _load_lmk(args: argparse.Namespace, log: Any) -> VariantLmk:
    if args.test_lmk:
        log.warning("hsmd_test_lmk_loaded", warning=TEST_LMK_WARNING)
        return VariantLmk.test_lmk()
    try:
        lmk = load_lmk_file(Path(args.lmk_file), _passphrase(confirm=False))
    except LmkFileError as exc:
        raise CliError(str(exc)) from None
    log.info("hsmd_lmk_loaded", lmk_file=str(args.lmk_file), lmk_check_value=lmk.check_value()[:6])
    return lmk


def _cmd_init(args: argparse.Namespace, log: Any) -> int:
    path = Path(args.lmk_file)
    if path.exists() and not args.force:
        raise CliError(f"{path} exists; use --force to replace it (keys under the old LMK become unusable)")
    lmk = VariantLmk.generate()
    write_lmk_file(path, lmk, _passphrase(confirm=True))
    print(f"LMK written to {path}; check value {lmk.check_value()}")
    return 0


async def _serve(server: HsmServer) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                server.stop()
                break
        # run() returns after draining; nothing else keeps the nursery open.


def _cmd_run(args: argparse.Namespace, log: Any) -> int:
    vault = KeyVault(_load_lmk(args, log))
    processor = HostCommandProcessor(vault, header_length=args.header_length, log=log)
    config = ServerConfig(
        host=args.host,
        port=args.port,
        frame_bytes_max=args.frame_bytes_max,
        read_timeout_s=args.read_timeout_s,
        connections_max=args.connections_max,
    )
    trio.run(_serve, HsmServer(processor, config, log=log))
    return 0


def _key_type(code: str) -> Any:
    try:
        return key_type(code)
    except KeyRejected as exc:
        raise CliError(exc.message) from None


def _unwrap(vault: KeyVault, field: str, code: str) -> bytes:
    try:
        key = vault.unwrap(field.upper(), _key_type(code))
    except KeyRejected as exc:
        raise CliError(exc.message) from None
    if not key.parity_ok:
        raise CliError(f"key of type {code} fails its parity check")
    return key.clear


def _cmd_key(args: argparse.Namespace, log: Any) -> int:
    vault = KeyVault(_load_lmk(args, log))
    action = args.key_action
    if action == "generate":
        clear = random_key(_SCHEME_BYTES[args.scheme])
        print(f"key (LMK): {vault.wrap(clear, _key_type(args.type), args.scheme)}")
        print(f"check value: {kcv_tdes(clear, 6)}")
    elif action == "kcv":
        print(f"check value: {kcv_tdes(_unwrap(vault, args.key, args.type), 6)}")
    elif action == "import-components":
        length = _SCHEME_BYTES[args.scheme]
        combined = bytes(length)
        for number in range(1, args.components + 1):
            text = getpass.getpass(f"component {number} ({2 * length} hex digits, not echoed): ").strip()
            try:
                component = bytes.fromhex(text)
            except ValueError:
                raise CliError(f"component {number} is not hexadecimal") from None
            if len(component) != length or not has_odd_parity(component):
                raise CliError(f"component {number} has the wrong length or parity")
            print(f"component {number} check value: {kcv_tdes(component, 6)}")
            combined = bytes(a ^ b for a, b in zip(combined, component, strict=True))
        # XOR of an even number of odd-parity components has even parity: force odd parity, as payShield does.
        combined = with_odd_parity(combined)
        print(f"key (LMK): {vault.wrap(combined, _key_type(args.type), args.scheme)}")
        print(f"check value: {kcv_tdes(combined, 6)}")
    elif action == "tr31-wrap":
        kbpk = _unwrap(vault, args.kbpk, ZMK.code)
        clear = _unwrap(vault, args.key, args.key_type)
        print(f"key block: {tr31_wrap(kbpk, args.header, clear)}")
        print(f"check value: {kcv_tdes(clear, 6)}")
    elif action == "tr31-unwrap":
        kbpk = _unwrap(vault, args.kbpk, ZMK.code)
        header, clear = tr31_unwrap(kbpk, args.block.strip())
        if len(clear) != _SCHEME_BYTES[args.scheme]:
            raise CliError("the key in the block does not match --scheme")
        print(f"header: {header}")
        print(f"key (LMK): {vault.wrap(clear, _key_type(args.key_type), args.scheme)}")
        print(f"check value: {kcv_tdes(clear, 6)}")
    return 0


def _lmk_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lmk-file", default=str(LMK_FILE_DEFAULT), help="encrypted LMK file")
    parser.add_argument("--test-lmk", action="store_true", help="use the PUBLIC test LMK (testing only)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hsmd", description="Software HSM (payShield-style host commands)")
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="create a new LMK, encrypted under a passphrase")
    init.add_argument("--lmk-file", default=str(LMK_FILE_DEFAULT))
    init.add_argument("--force", action="store_true", help="replace an existing LMK file")

    run = commands.add_parser("run", help="run the HSM daemon")
    _lmk_options(run)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=1500)
    run.add_argument("--header-length", type=int, default=HEADER_LENGTH_DEFAULT)
    run.add_argument("--read-timeout-s", type=float, default=300.0)
    run.add_argument("--frame-bytes-max", type=int, default=FRAME_BYTES_MAX_DEFAULT)
    run.add_argument("--connections-max", type=int, default=256)

    key = commands.add_parser("key", help="key utilities (print encrypted keys and check values only)")
    actions = key.add_subparsers(dest="key_action", required=True)
    generate = actions.add_parser("generate", help="generate a key under the LMK")
    generate.add_argument("--type", required=True, help="key type code, e.g. 000 ZMK, 001 ZPK, 002 TPK")
    generate.add_argument("--scheme", default="U", choices=sorted(_SCHEME_BYTES))
    kcv = actions.add_parser("kcv", help="check value of a key under the LMK")
    kcv.add_argument("--type", required=True)
    kcv.add_argument("key")
    components = actions.add_parser("import-components", help="form a key from clear components (prompted)")
    components.add_argument("--type", required=True)
    components.add_argument("--scheme", default="U", choices=sorted(_SCHEME_BYTES))
    components.add_argument("--components", type=int, default=2, choices=range(2, 10))
    wrap = actions.add_parser("tr31-wrap", help="export a key as a TR-31 key block under a ZMK (KBPK)")
    wrap.add_argument("--kbpk", required=True, help="the ZMK, under the LMK")
    wrap.add_argument("--key", required=True, help="the key to export, under the LMK")
    wrap.add_argument("--key-type", required=True)
    wrap.add_argument("--header", default="B0000P0TE00N0000", help="TR-31 header (length digits computed)")
    unwrap = actions.add_parser("tr31-unwrap", help="import a TR-31 key block received under a ZMK (KBPK)")
    unwrap.add_argument("--kbpk", required=True)
    unwrap.add_argument("--block", required=True)
    unwrap.add_argument("--key-type", required=True)
    unwrap.add_argument("--scheme", default="U", choices=sorted(_SCHEME_BYTES))
    for sub in (generate, kcv, components, wrap, unwrap):
        _lmk_options(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    log = structlog.get_logger("hsmd")
    try:
        if args.command == "init":
            return _cmd_init(args, log)
        if args.command == "run":
            return _cmd_run(args, log)
        return _cmd_key(args, log)
    except CliError as exc:
        print(f"hsmd: {exc}", file=sys.stderr)
        return 2
    except CryptoError as exc:
        print(f"hsmd: error {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
