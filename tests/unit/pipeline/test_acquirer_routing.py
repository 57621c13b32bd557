"""The acquirer side through the Authorizer: a terminal's request for a card we do not issue is routed and
forwarded. The small real world of world.py (ledger model, in-memory directory, software HSM), a routing
table in memory and the fakes of test_forward.py for the links, store-and-forward and forwarded store."""

from __future__ import annotations

import pytest
import structlog

from hsm.crypto.des import kcv_tdes
from hsm.crypto.pinblock import decrypt_pin_block
from hsm.keys import ZPK
from specs.demo import demo_pan
from switch.domain.results import Result
from switch.domain.routing import ON_US, BinRange, PrefixRange, RouteRule, RoutingTable, RuleKind
from switch.domain.translation import NetworkKeySet, ZoneKey
from switch.iso.codec import Codec
from switch.iso.message import Message
from switch.pipeline.authorize import Authorizer, Outcome
from switch.pipeline.forward import (
    Forwarder,
    ForwardingNetwork,
    network_settlement_account_id,
    settlement_accounts_for,
)
from switch.pipeline.network_keys import NetworkKeys
from switch.ports import SafEntry
from tests.unit.pipeline.test_forward import (
    KEY_INDEX,
    PROFILES,
    ZPK_CLEAR,
    FakeNetwork,
    FakeSaf,
    MemoryForwarded,
    MemoryKeyStore,
    answering,
    no_answer,
)
from tests.unit.pipeline.world import CODEC, MERCHANT_ACCOUNT, NOW, PIN, World

FOREIGN = demo_pan("476173", 3)
FOREIGN_TRACK = f"{FOREIGN}=30122011234567890"
EXCLUDED = demo_pan("400555", 3)  # a Visa BIN the table's rule excludes
UNKNOWN = demo_pan("555555", 3)  # no range holds it
NOT_ISSUED = "9900010000000027"  # in our own range, but no such card


class StaticRoutes:
    def __init__(self, table: RoutingTable) -> None:
        self._table = table

    async def table(self) -> RoutingTable:
        return self._table


TABLE = RoutingTable(
    networks=("cups", "visa"),
    bin_ranges=(
        BinRange(range_id=1, owner=ON_US, prefixes=PrefixRange("990001", "990001"), priority=10),
        BinRange(range_id=2, owner="visa", prefixes=PrefixRange("476173", "476173"), priority=10),
        BinRange(range_id=3, owner="visa", prefixes=PrefixRange("400000", "499999")),
    ),
    rules=(
        RouteRule(rule_id=1, kind=RuleKind.EXCLUDE, network="visa", scope=PrefixRange("400555", "400555")),
    ),
)


class AcquirerRig:
    def __init__(self) -> None:
        self.world = World()
        self.saf = FakeSaf()
        self.forwarded = MemoryForwarded(self.world.ledger)
        self.store = MemoryKeyStore()
        self.links = {name: FakeNetwork(name) for name in PROFILES}
        for name, clear in ZPK_CLEAR.items():
            self.store.keys[name] = NetworkKeySet(
                current=ZoneKey(
                    index=KEY_INDEX[name],
                    under_lmk=self.world.vault.wrap(clear, ZPK, "U"),
                    check_value=kcv_tdes(clear),
                    installed_at=NOW,
                )
            )
        self.forwarder = Forwarder(
            networks={
                name: ForwardingNetwork(
                    profile=PROFILES[name],
                    link=self.links[name],
                    keys=NetworkKeys(
                        profile=PROFILES[name],
                        hsm=self.world.hsm,
                        store=self.store,
                        clock=self.world.clock,
                        key_grace_s=300,
                        deadline_s=2,
                    ),
                    deadline_s=2,
                )
                for name in PROFILES
            },
            hsm=self.world.hsm,
            ledger=self.world.ledger,
            saf=self.saf,
            forwarded=self.forwarded,
            settlement_accounts=settlement_accounts_for([("visa", 840), ("cups", 840)]),
            card_token=lambda pan: pan.digits[-4:],
            clock=self.world.clock,
        )
        self.authorizer = Authorizer(
            directory=self.world.directory,
            ledger=self.world.ledger,
            hsm=self.world.hsm,
            clock=self.world.clock,
            respond=lambda request, code: CODEC.response(request, response_code=code),
            encode=CODEC.encode_message,
            routes=StaticRoutes(TABLE),
            forwarder=self.forwarder,
        )

    async def open(self) -> None:
        await self.world.fund()
        await self.forwarder.ensure_settlement_accounts()

    def request(self, pan: str = FOREIGN, *, pin: bool = True, **options: object) -> Message:
        extra = dict(options.pop("extra", {}) or {})  # type: ignore[call-overload]
        if pin:
            extra[52] = self.world.pin_block(PIN, pan)
        return self.world.request(pin=None, track2=f"{pan}=30122011234567890", extra=extra, **options)  # type: ignore[arg-type]

    async def handle(self, request: Message) -> Outcome:
        return await self.authorizer.handle(request)


@pytest.fixture
async def rig() -> AcquirerRig:
    r = AcquirerRig()
    await r.open()
    return r


async def test_foreign_card_is_forwarded_and_answered_with_the_networks_auth_code(rig):
    """If a terminal sells to a card of a Visa BIN, then Visa gets it and the terminal gets Visa's 38."""
    outcome = await rig.handle(rig.request())
    assert outcome.result is Result.APPROVED
    assert outcome.response is not None and outcome.response[38] == "A1B2C3"
    assert outcome.route == "visa" and outcome.transfer_id is not None
    assert len(rig.links["visa"].sent) == 1


async def test_forwarded_pin_block_is_under_the_networks_zpk(rig):
    """If the terminal's PIN block is under its TPK, then Visa receives it under Visa's ZPK."""
    request = rig.request()
    await rig.handle(request)
    sent = rig.links["visa"].sent[0]
    assert decrypt_pin_block(bytes.fromhex(sent[52]), FOREIGN, 0, ZPK_CLEAR["visa"]) == PIN
    assert sent[52] != request[52]


async def test_card_of_no_known_range_is_15_and_nothing_is_sent(rig):
    """If no BIN range holds the card, then 15 (no such issuer) and no network is asked."""
    outcome = await rig.handle(rig.request(UNKNOWN))
    assert outcome.response is not None and outcome.response[39] == "15"
    assert not rig.links["visa"].sent and not rig.links["cups"].sent


async def test_card_every_network_is_excluded_for_is_15(rig):
    """If rules exclude every network holding the card, then 15."""
    outcome = await rig.handle(rig.request(EXCLUDED))
    assert outcome.response is not None and outcome.response[39] == "15"


async def test_card_in_our_range_that_we_never_issued_is_14(rig):
    """If the card is in an on-us range but not issued, then 14, as before routing existed."""
    outcome = await rig.handle(rig.request(NOT_ISSUED, pin=False))
    assert outcome.response is not None and outcome.response[39] == "14"


async def test_our_own_card_stays_on_us(rig):
    """If the card is ours, then it is authorized on our ledger and no network is asked."""
    outcome = await rig.handle(rig.world.request())
    assert outcome.result is Result.APPROVED and outcome.route == "on-us"
    assert not rig.links["visa"].sent


async def test_foreign_card_without_a_currency_is_30(rig):
    """If a foreign card's request has no field 49, then 30: nothing else says its currency."""
    outcome = await rig.handle(rig.request(extra={49: ""}).with_fields({49: None}))
    assert outcome.response is not None and outcome.response[39] == "30"
    assert not rig.links["visa"].sent


async def test_atm_withdrawal_of_a_foreign_card_without_pin_is_55(rig):
    """If an ATM withdrawal of a foreign card carries no PIN, then 55 and nothing is sent."""
    outcome = await rig.handle(rig.request(pin=False, processing_code="010000", terminal="ATM00001"))
    assert outcome.response is not None and outcome.response[39] == "55"
    assert not rig.links["visa"].sent


async def test_network_decline_reaches_the_terminal_in_its_code(rig):
    """If Visa declines with 51, then the terminal gets 51 and nothing is posted."""
    rig.links["visa"].answer = answering("visa", "51")
    outcome = await rig.handle(rig.request())
    assert outcome.response is not None and outcome.response[39] == "51"
    assert await rig.world.available(MERCHANT_ACCOUNT) == 0


def names(request: Message) -> str:
    """Field 90 of a follow-up naming `request` (MTI, STAN, transmission time)."""
    return request.mti + request[11] + request[7] + "0" * 22


async def settlement_owed(rig: AcquirerRig) -> int:
    """What Visa owes us on its settlement account: posted debits minus credits."""
    account = network_settlement_account_id("visa", 840)
    b = (await rig.world.ledger.balances([account]))[account]
    return b.debits_posted - b.credits_posted


async def test_completion_naming_no_forwarded_preauth_is_25(rig):
    """If a foreign card's completion names a pre-authorization the switch never forwarded, then 25."""
    outcome = await rig.handle(
        rig.request(mti="0220", pin=False, extra={90: "0100" + "000001" + "1123193500" + "0" * 22})
    )
    assert outcome.response is not None and outcome.response[39] == "25"
    assert not rig.saf.entries


async def test_completion_of_a_forwarded_preauth_posts_part_and_queues_the_advice(rig):
    """If a forwarded pre-auth of 50.00 is completed for 30.00, then 00 with the pre-auth's auth code, the
    merchant gets 30.00 (the hold is released), and a 0220 for 30.00 naming the 0100 as sent is queued."""
    preauth = rig.request(mti="0100", amount=5000)
    assert (await rig.handle(preauth)).result is Result.APPROVED
    (sent,) = rig.links["visa"].sent
    completion = rig.request(mti="0220", amount=3000, pin=False, extra={90: names(preauth)})
    outcome = await rig.handle(completion)
    assert outcome.response is not None and outcome.response[39] == "00"
    assert outcome.response[38] == "A1B2C3" and outcome.route == "visa"
    assert await rig.world.available(MERCHANT_ACCOUNT) == 3000
    assert await settlement_owed(rig) == 3000
    (entry,) = rig.saf.entries
    advice = entry.message
    assert (entry.kind, advice.mti, advice[4], advice[38]) == ("advice", "0220", f"{3000:012d}", "A1B2C3")
    assert advice[90][:20] == "0100" + sent[11] + sent[7] and advice[2] == FOREIGN
    assert len(rig.links["visa"].sent) == 1  # the advice goes through store-and-forward, not now


async def test_completion_repeat_is_answered_once_and_a_second_completion_is_25(rig):
    """If the same completion comes twice, then the second gets the first answer and one advice is
    queued; a completion with another STAN of the completed hold is 25 and changes nothing."""
    preauth = rig.request(mti="0100", amount=5000)
    await rig.handle(preauth)
    completion = rig.request(mti="0220", amount=5000, pin=False, extra={90: names(preauth)})
    for _ in range(2):
        outcome = await rig.handle(completion)
        assert outcome.response is not None and outcome.response[39] == "00"
    again = rig.request(mti="0220", amount=5000, pin=False, extra={90: names(preauth)})
    outcome = await rig.handle(again)
    assert outcome.response is not None and outcome.response[39] == "25"
    assert len(rig.saf.entries) == 1 and await settlement_owed(rig) == 5000


async def test_completion_above_the_hold_or_of_a_purchase_or_with_another_card_changes_nothing(rig):
    """If a completion asks more than the hold (13), names a purchase instead of a pre-auth (25) or
    carries another card than the pre-auth's (25), then nothing is posted and no advice is queued."""
    preauth = rig.request(mti="0100", amount=5000)
    purchase = rig.request(amount=1000)
    await rig.handle(preauth)
    await rig.handle(purchase)
    other = demo_pan("476173", 4)
    for request, code in (
        (rig.request(mti="0220", amount=5001, pin=False, extra={90: names(preauth)}), "13"),
        (rig.request(mti="0220", amount=500, pin=False, extra={90: names(purchase)}), "25"),
        (rig.request(other, mti="0220", amount=500, pin=False, extra={90: names(preauth)}), "25"),
    ):
        outcome = await rig.handle(request)
        assert outcome.response is not None and outcome.response[39] == code
    assert not rig.saf.entries
    assert await settlement_owed(rig) == 1000  # the purchase alone


async def test_void_of_a_forwarded_purchase_gives_it_back_and_queues_a_reversal(rig):
    """If a forwarded purchase of 20.00 is voided for 15.00, then 00, 15.00 comes back from the
    merchant, and a partial 0420 (95: 5.00 stays) naming the purchase is queued; a second void is 25."""
    purchase = rig.request(amount=2000)
    await rig.handle(purchase)
    void = rig.request(processing_code="020000", amount=1500, pin=False, extra={90: names(purchase)})
    outcome = await rig.handle(void)
    assert outcome.response is not None and outcome.response[39] == "00"
    assert await settlement_owed(rig) == 500
    (entry,) = rig.saf.entries
    assert (entry.kind, entry.message.mti, entry.message[95][:12]) == ("reversal", "0420", f"{500:012d}")
    again = rig.request(processing_code="020000", amount=500, pin=False, extra={90: names(purchase)})
    outcome = await rig.handle(again)
    assert outcome.response is not None and outcome.response[39] == "25"
    assert len(rig.saf.entries) == 1 and await settlement_owed(rig) == 500


async def test_reversal_of_a_forwarded_void_is_acknowledged_without_effect_and_logged(rig):
    """If a terminal reverses its void of a forwarded purchase, then it is answered 00, nothing moves and
    nothing more goes to the network (a reversal cannot be undone there), and a warning says so; no log
    line holds the PAN."""
    purchase = rig.request(amount=2000)
    await rig.handle(purchase)
    void = rig.request(processing_code="020000", amount=2000, pin=False, extra={90: names(purchase)})
    assert (await rig.handle(void)).result is Result.APPROVED
    reversal = rig.request(
        mti="0400", processing_code="020000", amount=2000, pin=False, extra={90: names(void)}
    )
    with structlog.testing.capture_logs() as logs:
        outcome = await rig.handle(reversal)
    assert outcome.response is not None and outcome.response[39] == "00"
    assert await settlement_owed(rig) == 0
    assert [e.kind for e in rig.saf.entries] == ["reversal"]
    assert any(e["event"].startswith("reversal of a forwarded void has no effect") for e in logs)
    assert FOREIGN not in repr(logs)
    again = rig.request(processing_code="020000", amount=2000, pin=False, extra={90: names(void)})
    assert (await rig.handle(again)).response[39] == "25"  # a void is not voided


async def test_reversal_of_a_forwarded_completion_without_its_record_is_logged_as_such(rig):
    """If a forwarded completion's record is missing (its writing failed) and the terminal reverses the
    completion, then it is acknowledged without effect and the error log says the record is missing, not
    that the card does not match."""
    preauth = rig.request(mti="0100", amount=5000)
    await rig.handle(preauth)
    completion = rig.request(mti="0220", amount=3000, pin=False, extra={90: names(preauth)})
    assert (await rig.handle(completion)).result is Result.APPROVED
    del rig.forwarded.records[f"{completion[41]}:{completion[7]}:{completion[11]}"]
    reversal = rig.request(mti="0400", amount=3000, pin=False, extra={90: names(completion)})
    with structlog.testing.capture_logs() as logs:
        outcome = await rig.handle(reversal)
    assert outcome.response is not None and outcome.response[39] == "00"
    assert await settlement_owed(rig) == 3000
    events = [e["event"] for e in logs]
    assert "reversal of a forwarded transaction without its record: nothing reversed" in events
    assert "reversal card does not match its original" not in events


async def test_void_of_a_forwarded_preauth_is_25(rig):
    """If a terminal voids a forwarded pre-authorization, then 25 (a hold is cancelled by a reversal)."""
    preauth = rig.request(mti="0100", amount=5000)
    await rig.handle(preauth)
    void = rig.request(processing_code="020000", amount=5000, pin=False, extra={90: names(preauth)})
    outcome = await rig.handle(void)
    assert outcome.response is not None and outcome.response[39] == "25"
    assert not rig.saf.entries


async def test_timeout_is_91_with_a_reversal_queued(rig):
    """If Visa does not answer before its deadline, then 91 (no stand-in with a PIN) and a 0420 is queued."""
    rig.links["visa"].answer = no_answer
    outcome = await rig.handle(rig.request())
    assert outcome.response is not None and outcome.response[39] == "91"
    assert outcome.route == "visa"
    assert [e.message.mti for e in rig.saf.entries] == ["0420"]


async def test_terminal_reversal_of_a_forwarded_purchase_queues_the_networks_0420(rig):
    """If the terminal reverses a forwarded purchase, then 00, the posting is undone and a 0420 queued."""
    sale = rig.request(pin=False, stan="000500")
    assert (await rig.handle(sale)).result is Result.APPROVED
    reversal = rig.request(
        pin=False, mti="0420", stan="000501", extra={90: f"0200000500{sale[7]}" + "0" * 22}
    )
    outcome = await rig.handle(reversal)
    assert outcome.response is not None and outcome.response[39] == "00"
    assert outcome.route == "visa"
    assert await rig.world.available(MERCHANT_ACCOUNT) == 0
    [entry] = rig.saf.entries
    assert isinstance(entry, SafEntry) and entry.message.mti == "0420" and entry.message[2] == FOREIGN


async def test_retransmission_of_a_forwarded_purchase_keeps_its_route_and_is_sent_once(rig):
    """If the terminal sends the same purchase again, then the first answer comes back, route included,
    and the network is asked once."""
    request = rig.request(pin=False)
    first = await rig.handle(request)
    again = await rig.handle(request)
    assert again.retransmission and again.route == first.route == "visa"
    assert len(rig.links["visa"].sent) == 1


async def test_forwarding_needs_both_routes_and_forwarder():
    """If only one of the routing table and the forwarder is given, then the Authorizer refuses to start."""
    world = World()
    with pytest.raises(ValueError, match="both"):
        Authorizer(
            directory=world.directory,
            ledger=world.ledger,
            hsm=world.hsm,
            clock=world.clock,
            respond=lambda request, code: Codec("terminal").response(request, response_code=code),
            encode=CODEC.encode_message,
            routes=StaticRoutes(TABLE),
        )


# -- late answers (Forwarder.late_response) -------------------------------------------------------------------


async def test_late_approval_of_a_timed_out_request_is_reversed_once(rig):
    """If Visa's approval arrives after the deadline, then its reversal is queued, once (the timeout's
    entry has the same key)."""
    rig.links["visa"].answer = no_answer
    await rig.handle(rig.request(pin=False))
    sent = rig.links["visa"].sent[0]
    late = answering("visa")(sent)
    queued = await rig.forwarder.late_response(network="visa", response=late, request=sent, reason="late")
    assert queued is False  # already queued by the timeout
    assert len(rig.saf.entries) == 1


def sent_request(stan: str) -> Message:
    """A request as the link sent it to Visa (11 and 7 set), card in field 2."""
    return Message(
        "0200",
        {
            2: FOREIGN,
            3: "000000",
            4: "000000001000",
            7: "1123193500",
            11: stan,
            32: "990001",
            37: "632719000777",
            41: "POS00001",
            42: "DEMOMERCHANT001",
            49: "840",
        },
    )


async def test_late_approval_whose_reversal_was_not_queued_queues_it(rig):
    """If a late approval's request has no reversal queued yet, then it is queued now."""
    request = sent_request("000777")
    late = answering("visa")(request)
    assert await rig.forwarder.late_response(network="visa", response=late, request=request, reason="late")
    assert [e.message.mti for e in rig.saf.entries] == ["0420"]


async def test_late_decline_changes_nothing(rig):
    """If a late answer is a decline, then nothing is queued."""
    request = sent_request("000778")
    late = answering("visa", "05")(request)
    assert not await rig.forwarder.late_response(
        network="visa", response=late, request=request, reason="late"
    )
    assert not rig.saf.entries


async def test_reversal_of_a_forwarded_completion_gives_it_back_and_reverses_the_advice(rig):
    """If a terminal reverses its completion of a forwarded pre-auth, then 00, the merchant gives the
    30.00 back, and after the completion's 0220 a 0420 naming that 0220 is queued for the network."""
    preauth = rig.request(mti="0100", amount=5000)
    await rig.handle(preauth)
    completion = rig.request(mti="0220", amount=3000, pin=False, extra={90: names(preauth)})
    assert (await rig.handle(completion)).result is Result.APPROVED
    reversal = rig.request(mti="0400", amount=3000, pin=False, extra={90: names(completion)})
    outcome = await rig.handle(reversal)
    assert outcome.response is not None and outcome.response[39] == "00"
    assert await rig.world.available(MERCHANT_ACCOUNT) == 0 and await settlement_owed(rig) == 0
    advice, reversed_advice = (entry.message for entry in rig.saf.entries)
    assert (advice.mti, reversed_advice.mti) == ("0220", "0420")
    assert reversed_advice[90][:20] == "0220" + advice[11] + advice[7]
    again = await rig.handle(rig.request(mti="0400", amount=3000, pin=False, extra={90: names(completion)}))
    assert again.response is not None and again.response[39] == "00"
    assert len(rig.saf.entries) == 2 and await settlement_owed(rig) == 0


async def test_follow_ups_of_forwarded_transactions_by_rrn_alone(rig):
    """If a void and a completion name their forwarded originals by RRN alone (field 37, no 90), then the
    purchase is voided and the pre-auth completed, each found by its RRN on this terminal; an RRN of no
    forwarded original, or the purchase's RRN on a completion, is 25."""
    purchase = await rig.handle(rig.request(amount=2000))
    preauth = await rig.handle(rig.request(mti="0100", amount=5000))
    assert purchase.response is not None and preauth.response is not None
    sale_rrn, hold_rrn = purchase.response[37], preauth.response[37]
    for request, code in (
        (rig.request(mti="0220", amount=1000, pin=False, extra={37: sale_rrn}), "25"),
        (rig.request(processing_code="020000", amount=2000, pin=False, extra={37: "999999999999"}), "25"),
        (rig.request(processing_code="020000", amount=2000, pin=False, extra={37: sale_rrn}), "00"),
        (rig.request(mti="0220", amount=4000, pin=False, extra={37: hold_rrn}), "00"),
    ):
        outcome = await rig.handle(request)
        assert outcome.response is not None and outcome.response[39] == code, request
    assert await rig.world.available(MERCHANT_ACCOUNT) == 4000 and await settlement_owed(rig) == 4000
    assert [e.message.mti for e in rig.saf.entries] == ["0420", "0220"]
