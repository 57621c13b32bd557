"""Scripts of terminal steps for `pos-sim --script` / `atm-sim --script`: parsing and validation.

Two formats, same vocabulary (docs/simulators.md):

- lines: `TYPE key=value ...`, one step per line, `#` starts a comment, values may be quoted;
- JSON: a list of objects `{"type": "purchase", "amount": "12.34", ...}` (numbers are read as decimal
  text, never as floats).

A step may name its result (`as=sale1`) and refer to an earlier one (`of=sale1`, or `of=previous`, the
last transaction that was not network management), which is how a script voids, completes, cancels or
reverses what it did before. Everything is checked before the first message is sent, with the line (or
index) of the offending step in the error.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from simulators.messages import NEEDS_ORIGINAL, NETWORK_CODES, SimulatorError, TxnType, parse_amount

__all__ = [
    "PREVIOUS",
    "STEP_KEYS",
    "ScriptError",
    "Step",
    "load_script",
    "parse_json_script",
    "parse_line_script",
]

PREVIOUS = "previous"
STEPS_MAX = 10_000
# Accepted keys and what they hold; every value is text.
STEP_KEYS: Mapping[str, str] = {
    "amount": "decimal amount, e.g. 12.34",
    "cashback": "cashback decimal amount (cashback steps)",
    "actual": "reversal: amount actually dispensed/kept (partial reversal)",
    "from": "from account type: 00, 10 savings, 20 checking",
    "to": "to account type (transfer)",
    "pin": "PIN digits, or 'ask' to prompt",
    "new_pin": "new PIN (pin_change), or 'ask'",
    "card": "PAN or special demo card name",
    "expiry": "YYMM",
    "of": "the step whose result this one refers to: a name given with as=, or 'previous'",
    "as": "a name for this step's result",
    "expect": "expected response code; the run fails if it differs",
    "mti": "0200 for a completion as 0200 + 25=06, 0100 for a balance inquiry as 0100",
    "funded": "yes: prepaid load from the merchant's funding account (28) instead of cash (21)",
    "repeat": "yes: send a reversal as a repeat (0401/0421)",
    "advice": "yes: send a reversal as an advice (0420)",
}
_AMOUNT_KEYS = ("amount", "cashback", "actual")
NETWORK_TYPES = frozenset(NETWORK_CODES)
_YES = {"yes", "true", "1"}
_NO = {"no", "false", "0"}


class ScriptError(SimulatorError):
    """A script that cannot be run; the message names the line or step."""


@dataclass(frozen=True, slots=True)
class Step:
    type: TxnType
    where: str  # "line 3" or "step 2", for errors
    params: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold a PIN

    def get(self, key: str) -> str | None:
        return self.params.get(key)

    def flag(self, key: str) -> bool:
        return self.params.get(key, "no").lower() in _YES


def _step(kind: str, params: Mapping[str, str], where: str, names: set[str], *, has_earlier: bool) -> Step:
    try:
        txn = TxnType(kind.lower())
    except ValueError:
        known = ", ".join(t.value for t in TxnType)
        raise ScriptError(f"{where}: unknown transaction type {kind!r} (known: {known})") from None
    for key, value in params.items():
        if key not in STEP_KEYS:
            raise ScriptError(f"{where}: unknown key {key!r} (known: {', '.join(STEP_KEYS)})")
        if key in _AMOUNT_KEYS:
            try:
                parse_amount(value)
            except SimulatorError as exc:
                raise ScriptError(f"{where}: {exc}") from None
        if key in ("funded", "repeat", "advice") and value.lower() not in _YES | _NO:
            raise ScriptError(f"{where}: {key} must be yes or no")
        if key in ("from", "to") and (len(value) != 2 or not value.isdigit()):
            raise ScriptError(f"{where}: {key} must be 2 digits")
        if key == "expect" and (len(value) != 2 or not value.isalnum()):
            raise ScriptError(f"{where}: expect must be a 2-character response code")
        if key == "mti" and value not in ("0100", "0200", "0220"):
            raise ScriptError(f"{where}: mti must be 0100, 0200 or 0220")
    ref = params.get("of")
    if ref is not None:
        if txn not in NEEDS_ORIGINAL:
            raise ScriptError(f"{where}: {txn.value} does not refer to an earlier transaction (of=)")
        if ref != PREVIOUS and ref not in names:
            raise ScriptError(f"{where}: of={ref!r} names no earlier step (name steps with as=)")
    name = params.get("as")
    if name is not None:
        if name == PREVIOUS or not name.replace("_", "").replace("-", "").isalnum():
            raise ScriptError(f"{where}: as= needs a simple name (letters, digits, - and _)")
        if name in names:
            raise ScriptError(f"{where}: the name {name!r} is already used")
        names.add(name)
    if txn in NEEDS_ORIGINAL and ref is None and not has_earlier:
        raise ScriptError(f"{where}: {txn.value} needs an earlier transaction to refer to")
    return Step(type=txn, where=where, params=dict(params))


def _has_financial(steps: list[Step]) -> bool:
    return any(step.type not in NETWORK_TYPES for step in steps)


def parse_line_script(text: str) -> list[Step]:
    steps: list[Step] = []
    names: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"line {number}"
        try:
            tokens = shlex.split(raw, comments=True)
        except ValueError as exc:
            raise ScriptError(f"{where}: {exc}") from None
        if not tokens:
            continue
        params: dict[str, str] = {}
        for token in tokens[1:]:
            key, eq, value = token.partition("=")
            if not eq or not key:
                raise ScriptError(f"{where}: expected key=value, got {key!r}")
            if key in params:
                raise ScriptError(f"{where}: {key} given twice")
            params[key] = value
        steps.append(_step(tokens[0], params, where, names, has_earlier=_has_financial(steps)))
        if len(steps) > STEPS_MAX:
            raise ScriptError(f"a script may have at most {STEPS_MAX} steps")
    return steps


def parse_json_script(text: str) -> list[Step]:
    try:
        # Decimal numbers stay text: 12.34 must never become a float on its way to minor units.
        doc = json.loads(text, parse_float=str, parse_int=str)
    except json.JSONDecodeError as exc:
        raise ScriptError(f"script is not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(doc, list):
        raise ScriptError("a JSON script is a list of step objects")
    if len(doc) > STEPS_MAX:
        raise ScriptError(f"a script may have at most {STEPS_MAX} steps")
    steps: list[Step] = []
    names: set[str] = set()
    for index, item in enumerate(doc, start=1):
        where = f"step {index}"
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise ScriptError(f'{where}: each step is an object with a "type"')
        params: dict[str, str] = {}
        for key, value in item.items():
            if key == "type":
                continue
            if isinstance(value, bool):
                value = "yes" if value else "no"
            if not isinstance(value, str):
                raise ScriptError(f"{where}: {key} must be text or a number")
            params[key] = value
        steps.append(_step(item["type"], params, where, names, has_earlier=_has_financial(steps)))
    return steps


def parse_script(text: str) -> list[Step]:
    """A JSON script when the text starts with '[', otherwise the line format."""
    steps = parse_json_script(text) if text.lstrip().startswith("[") else parse_line_script(text)
    if not steps:
        raise ScriptError("the script has no steps")
    return steps


def load_script(path: str) -> list[Step]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScriptError(f"cannot read script {path}: {exc.strerror or exc}") from None
    return parse_script(text)
