"""netsim's outputs: the clearing file per business date, and log lines that never carry card secrets."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime

from simulators.netsim.clearing import COLUMNS
from specs import demo
from switch.logs import configure_logging
from switch.masking import mask_pan
from tests.integration.netsim.support import Member, card, connected, http, running_netsim


def approving(ref: list[Member]):
    def answer(request):
        return ref[0].codec.response(request, response_code="00", updates={38: "Z00001"})

    return answer


async def test_clearing_file_lists_approvals_reversals_advices_and_acquired_requests(tmp_path):
    """If netsim approves, reverses, applies an advice and has an originated request approved, then each is one masked CSV line."""
    ref: list[Member] = []
    async with (
        running_netsim("visa", var_dir=tmp_path) as netsim,
        connected(netsim, answer=approving(ref)) as member,
    ):
        ref.append(member)
        await member.ready()
        pan = card("visa", 50)
        original = member.financial(pan, amount_minor=1100, pin="1234")
        assert (await member.request(original)).get(39) == "00"
        assert (await member.request(member.financial(pan, pin="0000"))).get(39) == "55"
        assert (await member.request(member.reversal(original))).get(39) == "00"
        assert (await member.request(member.financial(pan, mti="0220", amount_minor=300))).get(39) == "00"
        assert (await http(netsim, "POST", "/originate", {"amount_minor": 700}))[0] == 200
    path = tmp_path / "visa" / f"clearing-{datetime.now(UTC):%Y%m%d}.csv"
    text = path.read_text()
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == COLUMNS
    lines = [dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]]
    assert [(r["role"], r["mti"], r["amount_minor"]) for r in lines] == [
        ("issuer", "0200", "1100"),
        ("issuer", "0420", "1100"),
        ("issuer", "0220", "300"),
        ("acquirer", "0200", "700"),
    ]
    assert lines[0]["masked_pan"] == mask_pan(pan)
    assert lines[3]["masked_pan"] == mask_pan(demo.demo_pan(demo.DEBIT_BIN, 1))
    assert lines[0]["stan"] == original[11] and lines[0]["rrn"] == original[37]
    assert pan not in text


async def test_logs_carry_no_clear_pan_pin_pin_block_track_or_key():
    """If a session runs PIN requests, declines, a key exchange and an origination, then no log line holds card secrets."""
    out = io.StringIO()
    configure_logging("info", "json", out)
    ref: list[Member] = []
    async with running_netsim("cups") as netsim, connected(netsim, answer=approving(ref)) as member:
        ref.append(member)
        await member.ready()
        pan = card("cups", 51)
        request = member.financial(pan, track=True, pin="4826")
        secrets = [pan, request[35], request[52], member.current_key.key.hex().upper()]
        await member.request(request)
        await member.request(member.financial(pan, pin="4826"))
        assert (await http(netsim, "POST", "/originate", {"pin": "4826"}))[0] == 200
        originated = member.requests[0]
        secrets += [originated[2], originated[35], originated[52]]
    text = out.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert any(line["event"] == "netsim_message" and line.get("card") == mask_pan(pan) for line in lines)
    for secret in secrets:
        assert secret not in text
    # As a token of its own: a timestamp's microseconds or a port may contain the digits by chance.
    assert re.search(r"(?<![\d.])4826(?!\d)", text) is None
