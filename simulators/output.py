"""How the simulators show results: one human line (plus balances) or one JSON object per transaction.

The only things printed about a card are its masked PAN (first 6 + last 4); PINs, PIN blocks, track
data, MACs and keys never reach this module's output, which is built from `Result` fields, not from the
raw messages.
"""

from __future__ import annotations

import json
from typing import Any

from simulators.messages import AdditionalAmount, format_amount
from simulators.terminal import Result

__all__ = ["RESPONSE_MEANINGS", "human", "meaning", "to_json", "to_json_dict"]

# docs/transactions.md, "Response codes".
RESPONSE_MEANINGS: dict[str, str] = {
    "00": "approved",
    "03": "invalid merchant",
    "04": "pick up card",
    "12": "invalid transaction",
    "13": "invalid amount",
    "14": "invalid card number",
    "25": "unable to locate record",
    "30": "format error",
    "40": "requested function not supported",
    "41": "lost card",
    "43": "stolen card",
    "51": "insufficient funds",
    "54": "expired card",
    "55": "incorrect PIN",
    "57": "transaction not permitted to cardholder",
    "58": "transaction not permitted to terminal",
    "59": "suspected fraud",
    "61": "exceeds withdrawal amount limit",
    "62": "restricted card",
    "63": "security violation",
    "65": "exceeds withdrawal frequency limit",
    "75": "allowable number of PIN tries exceeded",
    "91": "issuer or switch inoperative",
    "94": "duplicate transmission",
    "96": "system malfunction",
}
_AMOUNT_TYPES = {"01": "ledger", "02": "available", "40": "cashback"}
_CURRENCY_NAMES = {840: "USD", 978: "EUR", 364: "IRR", 156: "CNY", 826: "GBP"}


def meaning(code: str | None) -> str:
    if code is None:
        return "no response"
    return RESPONSE_MEANINGS.get(code, "unknown response code")


def _currency(code: int | None) -> str:
    if code is None:
        return ""
    return _CURRENCY_NAMES.get(code, f"{code:03d}")


def _balance_dict(b: AdditionalAmount) -> dict[str, Any]:
    return {
        "account_type": b.account_type,
        "amount_type": _AMOUNT_TYPES.get(b.amount_type, b.amount_type),
        "currency": b.currency,
        "amount_minor": b.amount_minor,
        "amount": format_amount(b.amount_minor),
    }


def to_json_dict(result: Result, *, step: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": result.type.value,
        "mti": result.request_mti,
        "stan": result.stan,
        "transmission": result.transmission,
        "response_mti": result.response_mti,
        "response_code": result.response_code,
        "meaning": meaning(result.response_code),
        "approved": result.approved,
        "auth_code": result.auth_code,
        "rrn": result.rrn,
        "latency_ms": round(result.latency_ms, 3),
    }
    if step is not None:
        out = {"step": step, **out}
    if result.masked_pan is not None:
        out["card"] = result.masked_pan
    if result.amount_minor is not None:
        out["amount_minor"] = result.amount_minor
        out["amount"] = format_amount(result.amount_minor)
        out["currency"] = result.currency
    if result.balances:
        out["balances"] = [_balance_dict(b) for b in result.balances]
    if result.mac_ok is not None:
        out["mac_ok"] = result.mac_ok
    if result.error is not None:
        out["error"] = result.error
    return out


def to_json(result: Result, *, step: str | None = None) -> str:
    return json.dumps(to_json_dict(result, step=step), sort_keys=False)


def human(result: Result, *, step: str | None = None) -> str:
    """One line per transaction, then one indented line per balance group."""
    code = result.response_code or "--"
    parts = [f"{result.type.value:<12}", f"{code} {meaning(result.response_code)}"]
    if result.auth_code:
        parts.append(f"auth {result.auth_code}")
    if result.rrn:
        parts.append(f"rrn {result.rrn}")
    parts.append(f"stan {result.stan}")
    if result.masked_pan:
        parts.append(f"card {result.masked_pan}")
    if result.amount_minor:
        parts.append(f"amount {format_amount(result.amount_minor)} {_currency(result.currency)}".rstrip())
    parts.append(f"{result.latency_ms:.1f} ms")
    if result.mac_ok is False:
        parts.append("RESPONSE MAC WRONG")
    if result.error:
        parts.append(f"({result.error})")
    line = "  ".join(parts)
    if step is not None:
        line = f"[{step}] {line}"
    for b in result.balances:
        kind = _AMOUNT_TYPES.get(b.amount_type, f"type {b.amount_type}")
        line += f"\n    {kind:<10} account {b.account_type}  {format_amount(b.amount_minor)} {_currency(b.currency)}"
    return line
