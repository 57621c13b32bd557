"""`switchctl keys list|zmk|bdk`: the networks' zone keys and the DUKPT key sets (docs/networks.md,
"Key exchange and PIN blocks"; docs/operations.md, "Terminals").

- `list`: per network, the ZMK's check value and the current and previous ZPK (index, check value, when
  installed); the DUKPT key sets with how many terminals use each. Check values only: no key, not even
  under the LMK, is printed.
- `bdk KEY_SET_ID --key KEY --kcv KCV [--description TEXT]`: add a DUKPT key set (its base derivation key,
  double length, under the LMK, with its check value, checked by the HSM as for a ZMK); an existing key
  set is never replaced (its PIN pads' keys derive from the BDK it has). `switchctl terminal add
  --dukpt-key-set` then names it.
- `zmk NETWORK --key KEY --kcv KCV`: install the network's zone master key, given under the LMK (as
  `hsmd key import-components` prints it after the custodians entered their clear components) with its
  check value. The HSM computes the check value of KEY as a ZMK (command BU): when it is not KCV (a typo,
  another LMK, another key type) nothing is stored. A running switchd uses the new ZMK at its next key
  exchange with that network; the ZPKs it holds stay valid until then.

The HSM is the one switchd would use (`hsm.mode`, `hsm.lmk_file`), else the demo's public test LMK.
Exit codes: 0 done (or listed), 1 refused, 2 usage or environment error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime

import asyncpg
import trio

from hsm.client import HsmClient, HsmTransportError
from switch.adapters.postgres.network_keys import PgNetworkKeyStore
from switch.cli.common import fail, load_config_or_exit, open_cli_hsm, open_database
from switch.logs import configure_logging

__all__ = ["check_value_under_lmk", "key_refusal", "register", "valid_key_and_kcv"]

EXIT_OK = 0
EXIT_REFUSED = 1

_NETWORK = re.compile(r"[a-z0-9_]{1,32}")
# A key under the LMK as the HSM takes it: an optional scheme letter, then 16, 32 or 48 hex digits.
_KEY = re.compile(r"([UTXYZ]?)([0-9A-F]{16}|[0-9A-F]{32}|[0-9A-F]{48})")
_KCV = re.compile(r"[0-9A-F]{6}")
_ZMK_TYPE = "000"  # LMK key type of a ZMK (hsm.keys.ZMK)
_BDK_TYPE = "009"  # LMK key type of a DUKPT base derivation key (hsm.keys.BDK)
_KEY_SET_ID = re.compile(r"[0-9A-F]{10}")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `keys` command."""
    keys = subparsers.add_parser("keys", help="networks' zone keys and DUKPT key sets: list, zmk, bdk")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    listing = sub.add_parser("list", help="check values of each network's ZMK and ZPKs")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=_list)
    zmk = sub.add_parser("zmk", help="install a network's zone master key (under the LMK, with its KCV)")
    zmk.add_argument("network", metavar="NETWORK", help="the network's name, as in [networks.<name>]")
    zmk.add_argument("--key", required=True, help="the ZMK under the LMK (scheme letter and hex)")
    zmk.add_argument("--kcv", required=True, help="its check value, 6 hex digits")
    zmk.set_defaults(func=_zmk)
    bdk = sub.add_parser(
        "bdk", help="add a DUKPT key set: its base derivation key (under the LMK, with its KCV)"
    )
    bdk.add_argument(
        "key_set_id", metavar="KEY_SET_ID", help="10 hex digits: the first part of its PIN pads' KSNs"
    )
    bdk.add_argument(
        "--key", required=True, help="the BDK under the LMK (scheme letter and hex, double length)"
    )
    bdk.add_argument("--kcv", required=True, help="its check value, 6 hex digits")
    bdk.add_argument("--description", default="", help="for operators (never a key)")
    bdk.set_defaults(func=_bdk)


async def check_value_under_lmk(hsm: HsmClient, key: str, key_type: str) -> str | None:
    """The 6-digit check value the HSM computes for `key` (under the LMK) as a key of LMK key type
    `key_type` (000 ZMK, 002 TMK), or None when the HSM refuses it (not such a key under this LMK:
    parity, length, scheme)."""
    found = _KEY.fullmatch(key)
    if found is None:
        return None
    length_flag = {16: "0", 32: "1", 48: "2"}[len(found.group(2))]
    try:
        code, data = await hsm.call("BU", f"FF{length_flag}{key};{key_type};001")
    except HsmTransportError as exc:
        raise fail(f"the HSM did not answer ({type(exc).__name__}); nothing stored") from None
    return data[:6] if code == "00" else None


async def key_refusal(hsm: HsmClient, key: str, key_type: str, kcv: str, what: str) -> str | None:
    """Why `key` is not stored as the operator's `what` (LMK key type `key_type`) with check value `kcv`,
    or None when the HSM confirms it. The check value the HSM computes is named in the refusal: it is the
    HSM's view of a key the operator already holds, not a secret."""
    computed = await check_value_under_lmk(hsm, key, key_type)
    if computed is None:
        return f"the HSM does not take that key as a {what} under its LMK; nothing stored"
    if computed != kcv:
        return f"the {what}'s check value is {computed}, not {kcv}; nothing stored"
    return None


def valid_key_and_kcv(key: str, kcv: str, what: str) -> tuple[str, str]:
    """`key` and `kcv` as typed, upper-cased; a usage error (exit 2) when either is malformed."""
    key, kcv = key.strip().upper(), kcv.strip().upper()
    if _KEY.fullmatch(key) is None:
        raise fail(
            f"{what}: a key under the LMK is an optional scheme letter (U, T, X, Y, Z) and 16, 32 or 48 hex digits"
        )
    if _KCV.fullmatch(kcv) is None:
        raise fail(f"{what}: a check value is 6 hex digits")
    return key, kcv


def _zmk(args: argparse.Namespace) -> int:
    network = args.network
    if _NETWORK.fullmatch(network) is None:
        raise fail("a network name is 1-32 lower-case letters, digits or '_'")
    key, kcv = valid_key_and_kcv(args.key, args.kcv, "--key/--kcv")
    config = load_config_or_exit(args.config)
    configure_logging("warning", "console", sys.stderr)

    async def main() -> int:
        async with open_cli_hsm(config) as hsm:
            refusal = await key_refusal(hsm, key, _ZMK_TYPE, kcv, "ZMK")
        if refusal is not None:
            print(f"refused: {refusal}", file=sys.stderr)
            return EXIT_REFUSED
        async with open_database(config) as db:
            try:
                await PgNetworkKeyStore(db).set_zone_master_key(network, zmk_under_lmk=key, check_value=kcv)
            except asyncpg.UndefinedTableError:
                raise fail("the database has no network tables: run `switchctl db migrate` first") from None
        known = "" if network in config.networks else f" (no [networks.{network}] in this configuration)"
        print(
            f"ZMK of {network} installed, check value {kcv}{known}; switchd uses it at its next key exchange"
        )
        return EXIT_OK

    return trio.run(main)


def _bdk(args: argparse.Namespace) -> int:
    key_set_id = args.key_set_id.strip().upper()
    if _KEY_SET_ID.fullmatch(key_set_id) is None:
        raise fail("a DUKPT key set id is 10 hex digits")
    key, kcv = valid_key_and_kcv(args.key, args.kcv, "--key/--kcv")
    if len(key.lstrip("UTXYZ")) != 32:
        raise fail("--key: a BDK here is double length (32 hex digits after its scheme letter)")
    config = load_config_or_exit(args.config)
    configure_logging("warning", "console", sys.stderr)

    async def main() -> int:
        async with open_cli_hsm(config) as hsm:
            refusal = await key_refusal(hsm, key, _BDK_TYPE, kcv, "BDK")
        if refusal is not None:
            print(f"refused: {refusal}", file=sys.stderr)
            return EXIT_REFUSED
        async with open_database(config) as db:
            try:
                status = await db.execute(
                    "INSERT INTO dukpt_key_sets (key_set_id, description, bdk_under_lmk) VALUES ($1, $2, $3) "
                    "ON CONFLICT (key_set_id) DO NOTHING",
                    key_set_id,
                    args.description.strip(),
                    key,
                )
            except asyncpg.UndefinedTableError:
                raise fail("the database has no DUKPT tables: run `switchctl db migrate` first") from None
        if status.endswith(" 0"):
            # Its PIN pads' keys derive from the BDK it has: replacing it would break every one of them.
            print(f"refused: key set {key_set_id} exists already; nothing changed", file=sys.stderr)
            return EXIT_REFUSED
        print(
            f"DUKPT key set {key_set_id} added, BDK check value {kcv}; "
            f"terminals name it with `switchctl terminal add ... --dukpt-key-set {key_set_id}`"
        )
        return EXIT_OK

    return trio.run(main)


def _list(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    configure_logging("warning", "console", sys.stderr)

    async def main() -> int:
        async with open_database(config) as db:
            try:
                rows = await db.fetch(
                    "SELECT network, zmk_check_value, current_index, current_check_value, current_installed_at,"
                    " previous_index, previous_check_value, previous_installed_at, updated_at"
                    " FROM network_keys ORDER BY network"
                )
                key_sets = await db.fetch(
                    "SELECT k.key_set_id, k.description, k.created_at, count(t.terminal_id) AS terminals"
                    " FROM dukpt_key_sets k LEFT JOIN terminals t ON t.dukpt_key_set_id = k.key_set_id"
                    " GROUP BY k.key_set_id ORDER BY k.key_set_id"
                )
            except asyncpg.UndefinedTableError:
                raise fail("the database has no network tables: run `switchctl db migrate` first") from None
        if args.json:
            for row in rows:
                print(json.dumps({"kind": "network"} | {k: _plain(v) for k, v in dict(row).items()}))
            for row in key_sets:
                print(json.dumps({"kind": "dukpt_key_set"} | {k: _plain(v) for k, v in dict(row).items()}))
            return EXIT_OK
        print(f"{'NETWORK':10} {'ZMK KCV':8} {'CURRENT ZPK':30} PREVIOUS ZPK")
        for row in rows:
            print(
                f"{row['network']:10} {row['zmk_check_value'] or '-':8} "
                f"{_zpk(row['current_index'], row['current_check_value'], row['current_installed_at']):30} "
                f"{_zpk(row['previous_index'], row['previous_check_value'], row['previous_installed_at'])}"
            )
        if not rows:
            print("no network keys yet (a ZMK is installed with `switchctl keys zmk`)")
        print(f"\n{'DUKPT KEY SET':13} {'TERMINALS':>9}  {'ADDED (UTC)':16}  DESCRIPTION")
        for row in key_sets:
            print(
                f"{row['key_set_id']:13} {row['terminals']:>9}  {row['created_at'].astimezone(UTC):%Y-%m-%d %H:%M}  "
                f"{row['description']}"
            )
        if not key_sets:
            print("no DUKPT key sets yet (one is added with `switchctl keys bdk`)")
        return EXIT_OK

    return trio.run(main)


def _zpk(index: int | None, kcv: str | None, installed: datetime | None) -> str:
    if index is None or installed is None:
        return "-"
    return f"#{index:02d} {kcv} {installed.astimezone(UTC):%Y-%m-%d %H:%M}"


def _plain(value: object) -> object:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value
