"""Network zone keys and forwarded transactions in PostgreSQL, the key exchange procedure with the real HSM
in-process (public test LMK), and the HSM port's interbank commands (A6, CA/CI, EC/EA).

The network side of the key exchange is a small in-memory link that answers the way the contract says
(0810/0830 with field 48); the store is the real `network_keys` table on a fresh database per test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import structlog
import trio
import trio.testing

from hsm.client import HsmClient, InProcessTransport
from hsm.crypto.des import kcv_tdes, tdes_ecb_encrypt, with_odd_parity
from hsm.crypto.pinblock import decrypt_pin_block, encrypt_pin_block
from hsm.crypto.pinverify import ibm3624_offset, visa_pvv
from hsm.host.processor import HostCommandProcessor
from hsm.keys import PVK, TPK, ZMK, ZPK, KeyVault
from hsm.lmk import VariantLmk
from specs import demo_networks
from specs.demo import demo_pan
from switch.adapters.hsm import ClientHsm
from switch.adapters.postgres.db import Database
from switch.adapters.postgres.ledger import PgLedger
from switch.adapters.postgres.network_keys import PgForwardedTransactions, PgNetworkKeyStore
from switch.domain.ledger_types import LedgerAccount, Transfer, TransferKind, TransferResult
from switch.domain.translation import NetworkKeySet, NetworkProfile, ZoneKey, field53
from switch.iso.codec import Codec
from switch.iso.message import Message
from switch.pipeline.network_keys import NetworkKeys
from switch.ports import (
    ForwardedRecord,
    Ibm3624Offset,
    NetworkExchange,
    NetworkUnavailable,
    TpkPinKey,
    VisaPvv,
)
from tests.unit.pipeline.world import FixedClock

NOW = datetime(2026, 11, 23, 19, 35, tzinfo=UTC)
ZMK_CLEAR = bytes.fromhex(demo_networks.network("cups").zmk_hex)
ZPK_CLEAR = with_odd_parity(bytes.fromhex("0F1E2D3C4B5A69788796A5B4C3D2E1F0"))
NEXT_ZPK_CLEAR = with_odd_parity(bytes.fromhex("1F2E3D4C5B6A79889706B5C4D3E2F101"))
TPK_CLEAR = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PVK_CLEAR = bytes.fromhex("1032547698BADCFE0123456789ABCDEF")
PAN = demo_pan("990001", 19)
PIN = "1234"
PROFILE = NetworkProfile(name="cups", dialect="cups", acquirer_id="99000100001", network_id="00010000")


def field48(index: int, clear: bytes, *, kcv: str | None = None) -> str:
    """A key exchange answer's field 48 as the network builds it: each half TDES-ECB under the ZMK."""
    return f"ZPK{index:02d}{tdes_ecb_encrypt(ZMK_CLEAR, clear).hex().upper()}{kcv or kcv_tdes(clear)}"


class KeyNetwork:
    """The Network port as a network answering key exchanges (and counting what it was asked)."""

    def __init__(self, answer: Callable[[Message], Message | None]) -> None:
        self.name = "cups"
        self.up = True
        self.answer = answer
        self.sent: list[Message] = []

    async def request(self, message: Message, *, timeout_s: float) -> NetworkExchange:
        await trio.lowlevel.checkpoint()
        if not self.up:
            raise NetworkUnavailable("network cups: down")
        sent = message.with_fields({11: f"{len(self.sent) + 1:06d}", 7: "1123193500"})
        self.sent.append(sent)
        return NetworkExchange(sent, self.answer(sent))


def giving(value: str | None, code: str = "00") -> Callable[[Message], Message]:
    codec = Codec("cups")
    return lambda sent: codec.response(sent, response_code=code, updates={48: value} if value else None)


class Rig:
    def __init__(self, db: Database) -> None:
        self.vault = KeyVault(VariantLmk.test_lmk())
        self.hsm = ClientHsm(HsmClient(InProcessTransport(HostCommandProcessor(self.vault))))
        self.store = PgNetworkKeyStore(db)
        self.clock = FixedClock(NOW)
        self.zmk = self.vault.wrap(ZMK_CLEAR, ZMK, "U")
        self.tpk = self.vault.wrap(TPK_CLEAR, TPK, "U")

    def keys(self, *, reload_s: float = 30.0, grace_s: float = 300.0) -> NetworkKeys:
        return NetworkKeys(
            profile=PROFILE,
            hsm=self.hsm,
            store=self.store,
            clock=self.clock,
            key_grace_s=grace_s,
            deadline_s=2.0,
            reload_s=reload_s,
        )

    async def configure_zmk(self) -> None:
        await self.store.set_zone_master_key("cups", zmk_under_lmk=self.zmk, check_value=kcv_tdes(ZMK_CLEAR))


@pytest.fixture
async def rig(db: Database) -> Rig:
    r = Rig(db)
    await r.configure_zmk()
    return r


def zone_key(index: int, kcv: str, at: datetime = NOW) -> ZoneKey:
    return ZoneKey(index=index, under_lmk=f"U{index:032X}", check_value=kcv, installed_at=at)


# -- the store -----------------------------------------------------------------------------------------


async def test_a_network_without_keys_loads_empty(db):
    """If a network never had a key exchange, then its key set is empty."""
    assert await PgNetworkKeyStore(db).load("visa") == NetworkKeySet()


async def test_installed_key_is_read_back(db):
    """If a key is installed, then loading gives it back, install time included."""
    store = PgNetworkKeyStore(db)
    await store.install("visa", zone_key(3, "ABCDEF"))
    assert await store.load("visa") == NetworkKeySet(current=zone_key(3, "ABCDEF"))


async def test_second_key_keeps_the_first_as_previous(db):
    """If a newer key is installed, then it is current and the first one previous, in the table too."""
    store = PgNetworkKeyStore(db)
    await store.install("visa", zone_key(3, "AAAAAA"))
    await store.install("visa", zone_key(4, "BBBBBB", NOW + timedelta(minutes=1)))
    loaded = await PgNetworkKeyStore(db).load("visa")
    assert loaded == NetworkKeySet(
        current=zone_key(4, "BBBBBB", NOW + timedelta(minutes=1)), previous=zone_key(3, "AAAAAA")
    )


async def test_concurrent_installs_keep_the_newest_current(db):
    """If two processes install keys 5 and 6 at the same moment, in either order, then 6 is current and 5
    previous."""
    store = PgNetworkKeyStore(db)
    await store.install("visa", zone_key(4, "444444"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(PgNetworkKeyStore(db).install, "visa", zone_key(6, "666666"))
        nursery.start_soon(PgNetworkKeyStore(db).install, "visa", zone_key(5, "555555"))
    loaded = await store.load("visa")
    assert (loaded.current, loaded.previous) == (zone_key(6, "666666"), zone_key(5, "555555"))


async def test_zone_master_key_is_kept_per_network(db):
    """If a network's ZMK is configured, then it is read back for that network and no other."""
    store = PgNetworkKeyStore(db)
    await store.set_zone_master_key("visa", zmk_under_lmk="U" + "A" * 32, check_value="3fa0f6")
    assert (await store.zone_master_key("visa"), await store.zone_master_key("cups")) == (
        "U" + "A" * 32,
        None,
    )


async def test_the_table_refuses_half_a_key(db):
    """If a row would hold a key index without its key, then PostgreSQL refuses it."""
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("INSERT INTO network_keys (network, current_index) VALUES ('visa', 3)")


# -- the key exchange ------------------------------------------------------------------------------------


async def test_key_exchange_installs_the_network_key(rig):
    """If the network answers a key exchange with a key and its right check value, then the key is stored
    and PIN blocks translated to it decrypt under the network's clear ZPK."""
    keys = rig.keys()
    link = KeyNetwork(giving(field48(7, ZPK_CLEAR)))
    assert await keys.exchange(link) == "installed"
    assert (link.sent[0].mti, link.sent[0][70], link.sent[0][33]) == ("0820", "101", "99000100001")
    current = (await rig.store.load("cups")).current
    assert current is not None and (current.index, current.check_value) == (7, kcv_tdes(ZPK_CLEAR))
    block = encrypt_pin_block(PIN, PAN, 0, TPK_CLEAR)
    moved = await rig.hsm.translate_pin_to_zpk(
        key=TpkPinKey(rig.tpk), zpk=current.under_lmk, pin_block=block, pan=PAN
    )
    assert moved is not None and decrypt_pin_block(moved, PAN, 0, ZPK_CLEAR) == PIN


async def test_wrong_check_value_keeps_the_old_key(rig):
    """If the check value does not match the key, then the old key stays, and the failure is counted and
    logged without key material."""
    keys = rig.keys()
    await keys.exchange(KeyNetwork(giving(field48(7, ZPK_CLEAR))))
    bad = field48(8, NEXT_ZPK_CLEAR, kcv="000000")
    with structlog.testing.capture_logs() as logs:
        assert await keys.exchange(KeyNetwork(giving(bad))) == "kcv_mismatch"
    stored = await rig.store.load("cups")
    assert stored.current is not None and stored.current.index == 7 and stored.previous is None
    assert keys.counts["kcv_mismatch"] == 1
    assert [e["outcome"] for e in logs] == ["kcv_mismatch"]
    assert bad[5:37] not in repr(logs) and kcv_tdes(NEXT_ZPK_CLEAR) not in repr(logs)


async def test_refused_key_exchange_changes_nothing(rig):
    """If the network answers the key exchange with a refusal, then no key is installed."""
    keys = rig.keys()
    assert await keys.exchange(KeyNetwork(giving(field48(7, ZPK_CLEAR), code="96"))) == "refused"
    assert await rig.store.load("cups") == NetworkKeySet()


async def test_malformed_field_48_changes_nothing(rig):
    """If the answer's field 48 is not the contract's layout, then no key is installed."""
    keys = rig.keys()
    assert await keys.exchange(KeyNetwork(giving("ZPK7" + "A" * 38))) == "malformed"
    assert await rig.store.load("cups") == NetworkKeySet()


async def test_unanswered_key_exchange_changes_nothing(rig):
    """If the network does not answer the key exchange, then the outcome says so and nothing changes."""
    keys = rig.keys()
    assert await keys.exchange(KeyNetwork(lambda sent: None)) == "unanswered"
    assert await rig.store.load("cups") == NetworkKeySet()


async def test_key_exchange_without_a_zmk_sends_nothing(db):
    """If the network has no ZMK configured, then no key exchange is sent."""
    rig = Rig(db)
    link = KeyNetwork(giving(field48(7, ZPK_CLEAR)))
    assert await rig.keys().exchange(link) == "no_zmk"
    assert link.sent == []


async def test_key_exchange_on_a_down_link_is_unavailable(rig):
    """If the link cannot send, then the exchange is unavailable and nothing changes."""
    link = KeyNetwork(giving(field48(7, ZPK_CLEAR)))
    link.up = False
    assert await rig.keys().exchange(link) == "unavailable"


async def test_same_key_again_is_unchanged(rig):
    """If the network sends the current key again, then the outcome is unchanged and no previous appears."""
    keys = rig.keys()
    await keys.exchange(KeyNetwork(giving(field48(7, ZPK_CLEAR))))
    assert await keys.exchange(KeyNetwork(giving(field48(7, ZPK_CLEAR)))) == "unchanged"
    assert (await rig.store.load("cups")).previous is None


async def test_another_process_sees_a_new_key_after_reload(rig):
    """If another process installs a new key, then this one sends under it once its copy is reload_s old."""
    mine, theirs = rig.keys(reload_s=30), rig.keys(reload_s=30)
    await mine.exchange(KeyNetwork(giving(field48(7, ZPK_CLEAR))))
    await theirs.exchange(KeyNetwork(giving(field48(8, NEXT_ZPK_CLEAR))))
    before = await mine.sending_key()
    rig.clock.current = NOW + timedelta(seconds=30)
    after = await mine.sending_key()
    assert (before and before.index, after and after.index) == (7, 8)


async def test_previous_key_is_accepted_for_the_grace_period(rig):
    """If a new key was installed, then the previous one decrypts PIN blocks for key_grace_s, not longer."""
    keys = rig.keys(grace_s=300)
    await keys.exchange(KeyNetwork(giving(field48(7, ZPK_CLEAR))))
    rig.clock.current = NOW + timedelta(seconds=10)
    await keys.exchange(KeyNetwork(giving(field48(8, NEXT_ZPK_CLEAR))))
    rig.clock.current = NOW + timedelta(seconds=309)
    within = await keys.receiving_key(7)
    rig.clock.current = NOW + timedelta(seconds=310)
    after = await keys.receiving_key(7)
    assert (within and within.index, after) == (7, None)


async def test_receiving_key_sees_a_newer_key_at_once(rig):
    """If a network's PIN block names a key another process just installed, then it is found without
    waiting for the reload period."""
    mine, theirs = rig.keys(reload_s=3600), rig.keys()
    await mine.exchange(KeyNetwork(giving(field48(7, ZPK_CLEAR))))
    await theirs.exchange(KeyNetwork(giving(field48(8, NEXT_ZPK_CLEAR))))
    found = await mine.receiving_key(8)
    assert found is not None and found.check_value == kcv_tdes(NEXT_ZPK_CLEAR)


# -- the HSM port's interbank commands ---------------------------------------------------------------------


async def test_imported_zpk_carries_the_hsm_check_value(rig):
    """If a ZPK under the ZMK is imported, then the HSM's check value is the clear key's."""
    imported = await rig.hsm.import_zone_pin_key(
        zmk=rig.zmk, zpk_under_zmk=tdes_ecb_encrypt(ZMK_CLEAR, ZPK_CLEAR).hex().upper()
    )
    assert imported.check_value == kcv_tdes(ZPK_CLEAR)
    assert rig.vault.wrap(ZPK_CLEAR, ZPK, "U") == imported.under_lmk


async def test_pin_under_zpk_verifies_by_pvv(rig):
    """If a network's PIN block under the ZPK holds the card's PIN, then PVV verification is True; another
    PIN is False."""
    zpk, pvk = rig.vault.wrap(ZPK_CLEAR, ZPK, "U"), rig.vault.wrap(PVK_CLEAR, PVK, "U")
    method = VisaPvv(pvk=pvk, pvki=1)
    pvv = visa_pvv(PVK_CLEAR, PAN, 1, PIN)

    async def verify(pin: str) -> bool:
        block = encrypt_pin_block(pin, PAN, 0, ZPK_CLEAR)
        return await rig.hsm.verify_pin_under_zpk(zpk=zpk, pin_block=block, pan=PAN, method=method, value=pvv)

    assert (await verify(PIN), await verify("9999")) == (True, False)


async def test_pin_under_zpk_verifies_by_ibm_offset(rig):
    """If a network's PIN block under the ZPK holds the card's PIN, then IBM offset verification is True."""
    zpk, pvk = rig.vault.wrap(ZPK_CLEAR, ZPK, "U"), rig.vault.wrap(PVK_CLEAR[:8], PVK, "Z")
    table, validation = "0123456789012345", "99000100000N"
    offset = ibm3624_offset(PVK_CLEAR[:8], validation.replace("N", PAN[:-1][-5:]), PIN, table, 4)
    method = Ibm3624Offset(pvk=pvk, decimalization_table=table, validation_data=validation, check_length=4)
    block = encrypt_pin_block(PIN, PAN, 0, ZPK_CLEAR)
    assert await rig.hsm.verify_pin_under_zpk(zpk=zpk, pin_block=block, pan=PAN, method=method, value=offset)


async def test_pin_block_under_another_zpk_does_not_verify(rig):
    """If a PIN block is under another key than the ZPK given, then verification is False, not an error."""
    zpk, pvk = rig.vault.wrap(ZPK_CLEAR, ZPK, "U"), rig.vault.wrap(PVK_CLEAR, PVK, "U")
    block = encrypt_pin_block(PIN, PAN, 0, NEXT_ZPK_CLEAR)
    ok = await rig.hsm.verify_pin_under_zpk(
        zpk=zpk,
        pin_block=block,
        pan=PAN,
        method=VisaPvv(pvk=pvk, pvki=1),
        value=visa_pvv(PVK_CLEAR, PAN, 1, PIN),
    )
    assert ok is False


# -- forwarded transactions ------------------------------------------------------------------------------


def forwarded(transfer_id: str = "POS00001:1123193500:000042", **fields: str) -> ForwardedRecord:
    message = Message(
        "0200",
        {3: "000000", 4: "000000001234", 7: "1123193501", 11: "000777", 32: "990001", 53: field53(1)}
        | {int(k[1:]): v for k, v in fields.items()},
    )
    return ForwardedRecord(
        transfer_id=transfer_id,
        network="visa",
        route="visa",
        message=message.with_fields({53: None}),
        pan_masked=PAN[:6] + "******" + PAN[-4:],
        amount=1234,
        currency=840,
        auth_code="A1B2C3",
        created_at=NOW,
    )


async def test_forwarded_transaction_is_read_back(db):
    """If a forwarded transaction is recorded, then it is found by its transfer id as it was."""
    store = PgForwardedTransactions(db)
    assert await store.record(forwarded()) is True
    assert await store.find("POS00001:1123193500:000042") == forwarded()


async def test_forwarded_transaction_is_recorded_once(db):
    """If the same transfer id is recorded twice, then the second is refused and the first stays."""
    store = PgForwardedTransactions(db)
    await store.record(forwarded())
    assert await store.record(forwarded(f4="000000009999")) is False
    found = await store.find("POS00001:1123193500:000042")
    assert found is not None and found.message[4] == "000000001234"


async def test_forwarded_transactions_are_found_by_rrn_on_their_terminal(db):
    """If records of two terminals carry the same RRN, then a lookup by RRN finds only the asking
    terminal's, oldest first, and an RRN nobody carried finds nothing."""
    store = PgForwardedTransactions(db)
    for transfer_id in (
        "POS00001:1123193500:000042",
        "POS00001:1123193600:000043",
        "POS00002:1123193500:000042",
    ):
        assert await store.record(forwarded(transfer_id, f37="632719000042"))
    found = await store.find_by_rrn("POS00001", "632719000042")
    assert [r.transfer_id for r in found] == ["POS00001:1123193500:000042", "POS00001:1123193600:000043"]
    assert await store.find_by_rrn("POS0000", "632719000042") == []  # a prefix of a terminal id is not it
    assert await store.find_by_rrn("POS00001", "632719000099") == []


async def test_forwarded_records_older_than_the_cut_off_are_pruned(db):
    """If records were made a day apart, then a prune deletes those made before its cut-off only, at most
    its limit a call, and the rest are still found."""
    store = PgForwardedTransactions(db)
    for day in range(3):
        entry = dataclasses.replace(
            forwarded(f"POS00001:1123193500:00004{day}"), created_at=NOW + timedelta(days=day)
        )
        assert await store.record(entry)
    cut_off = NOW + timedelta(days=2)
    assert await store.prune(cut_off, limit=1) == 1
    assert await store.find("POS00001:1123193500:000040") is None
    assert await store.prune(cut_off) == 1
    assert await store.prune(cut_off) == 0
    assert await store.find("POS00001:1123193500:000042") is not None


async def test_forwarded_transaction_with_card_data_is_refused(db):
    """If a record would hold the PAN, then it is refused before the database and nothing is stored."""
    with pytest.raises(ValueError, match="card data"):
        await PgForwardedTransactions(db).record(forwarded(f2=PAN))
    assert await db.fetchval("SELECT count(*) FROM forwarded_transactions") == 0


async def test_the_table_refuses_card_fields_from_plain_sql(db):
    """If plain SQL tries to keep a PIN block in a forwarded transaction, then PostgreSQL refuses it."""
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "INSERT INTO forwarded_transactions (transfer_id, network, route, mti, fields, pan_masked, amount,"
            " currency, created_at) VALUES ('t', 'visa', 'visa', '0200', '{\"52\": \"00\"}', '', 1, 840, now())"
        )


# -- forwarded transactions: concurrent records share one statement -------------------------------------


async def stored_ids(db: Database) -> set[str]:
    return {r["transfer_id"] for r in await db.fetch("SELECT transfer_id FROM forwarded_transactions")}


async def test_concurrent_records_share_statements(db):
    """If 100 forwarded approvals record at once, then each is committed and answered True, in far fewer
    INSERT statements than records."""
    store = PgForwardedTransactions(db)
    answers: dict[int, bool] = {}

    async def record(i: int) -> None:
        answers[i] = await store.record(forwarded(f"T{i:03d}"))

    async with trio.open_nursery() as nursery:
        for i in range(100):
            nursery.start_soon(record, i)
    assert answers == {i: True for i in range(100)}
    assert await stored_ids(db) == {f"T{i:03d}" for i in range(100)}
    assert store.stats().records == 100 and store.stats().statements <= 10


async def test_a_record_alone_is_sent_at_once(db):
    """If a single record comes with nothing else in flight, then it goes alone in one statement."""
    store = PgForwardedTransactions(db)
    assert await store.record(forwarded()) is True
    assert store.stats().batch_size_counts == {1: 1}


async def test_same_transfer_id_twice_in_one_batch_is_kept_once(db):
    """If two records with one transfer id travel in one batch, then exactly one is True and the stored row
    is that one's."""
    store = PgForwardedTransactions(db)
    answers: dict[str, bool] = {}

    async def record(amount: str) -> None:
        answers[amount] = await store.record(forwarded("SAME", f4=amount))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.record, forwarded("LEADER"))
        await trio.testing.wait_all_tasks_blocked()  # the leader's batch is in flight: the next two queue
        nursery.start_soon(record, "000000000001")
        nursery.start_soon(record, "000000000002")
    assert sorted(answers.values()) == [False, True]
    assert store.stats().batch_size_counts == {1: 2}  # the leader's row, then the batch sent once
    found = await store.find("SAME")
    assert found is not None and answers[found.message[4]] is True


async def test_same_transfer_id_in_a_later_batch_is_refused(db):
    """If a record's transfer id is in the batch in flight, then the record queued behind it is False and
    the others of its batch are True."""
    store = PgForwardedTransactions(db)
    answers: dict[str, bool] = {}

    async def record(transfer_id: str, amount: str = "000000001234") -> None:
        answers[f"{transfer_id}:{amount}"] = await store.record(forwarded(transfer_id, f4=amount))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(record, "FIRST")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(record, "FIRST", "000000009999")
        nursery.start_soon(record, "OTHER")
    assert answers == {"FIRST:000000001234": True, "FIRST:000000009999": False, "OTHER:000000001234": True}
    found = await store.find("FIRST")
    assert found is not None and found.message[4] == "000000001234"


async def test_failing_record_fails_only_its_caller(db):
    """If one record of a batch is refused by the database, then only its caller gets the error and the
    others of the batch are committed."""
    store = PgForwardedTransactions(db)
    outcome: dict[str, object] = {}

    async def record(entry: ForwardedRecord) -> None:
        try:
            outcome[entry.transfer_id] = await store.record(entry)
        except asyncpg.PostgresError as exc:
            outcome[entry.transfer_id] = exc

    bad = dataclasses.replace(forwarded("BAD"), pan_masked=PAN)  # the table refuses a clear PAN
    async with trio.open_nursery() as nursery:
        nursery.start_soon(record, forwarded("LEADER"))
        await trio.testing.wait_all_tasks_blocked()
        for entry in (forwarded("OK1"), bad, forwarded("OK2")):
            nursery.start_soon(record, entry)
    assert isinstance(outcome.pop("BAD"), asyncpg.CheckViolationError)
    assert outcome == {"LEADER": True, "OK1": True, "OK2": True}
    assert await stored_ids(db) == {"LEADER", "OK1", "OK2"}
    # The leader's row, the batch of three refused, then its three rows one by one.
    assert store.stats().batch_size_counts == {1: 4, 3: 1}


async def test_cancelled_waiting_caller_records_nothing(db):
    """If a caller is cancelled while its record waits for the batch in flight, then its record is not
    written, the others are, and the store serves later callers."""
    store = PgForwardedTransactions(db)
    answers: dict[str, bool] = {}
    cancelled: list[str] = []

    async def record(transfer_id: str, scope: trio.CancelScope) -> None:
        with scope:
            answers[transfer_id] = await store.record(forwarded(transfer_id))
        if scope.cancelled_caught:
            cancelled.append(transfer_id)

    scopes = {name: trio.CancelScope() for name in ("LEADER", "KEPT", "GONE")}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(record, "LEADER", scopes["LEADER"])
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(record, "KEPT", scopes["KEPT"])
        nursery.start_soon(record, "GONE", scopes["GONE"])
        await trio.testing.wait_all_tasks_blocked()
        scopes["GONE"].cancel()
    assert (answers, cancelled) == ({"LEADER": True, "KEPT": True}, ["GONE"])
    assert await stored_ids(db) == {"LEADER", "KEPT"}
    assert await store.record(forwarded("AFTER")) is True


async def test_cancelled_leader_still_commits_the_batch(db):
    """If the caller whose statement is in flight is cancelled, then that statement still commits its rows,
    and the callers queued behind it are served."""
    store = PgForwardedTransactions(db)
    answers: dict[str, bool] = {}
    leader = trio.CancelScope()

    async def record(transfer_id: str) -> None:
        answers[transfer_id] = await store.record(forwarded(transfer_id))

    async def lead() -> None:
        with leader:
            await store.record(forwarded("LEADER"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lead)
        await trio.testing.wait_all_tasks_blocked()
        for name in ("A", "B"):
            nursery.start_soon(record, name)
        await trio.testing.wait_all_tasks_blocked()
        leader.cancel()
    assert answers == {"A": True, "B": True}
    assert await stored_ids(db) == {"LEADER", "A", "B"}


# -- a forwarded approval's posting and its record, in one commit ---------------------------------------

NETWORK_ACCOUNT, MERCHANT_ACCOUNT, CAPPED_ACCOUNT = 71, 72, 73


async def posting_ledger(db: Database) -> PgLedger:
    ledger = PgLedger(db)
    await ledger.create_accounts(
        [
            LedgerAccount(account_id=NETWORK_ACCOUNT, currency=840),
            LedgerAccount(account_id=MERCHANT_ACCOUNT, currency=840),
            LedgerAccount(account_id=CAPPED_ACCOUNT, currency=840, debits_must_not_exceed_credits=True),
        ]
    )
    return ledger


def posting(transfer_id: str = "POS00001:1123193500:000042", *, debit: int = NETWORK_ACCOUNT) -> Transfer:
    return Transfer(
        transfer_id=transfer_id,
        kind=TransferKind.POSTED,
        debit_account_id=debit,
        credit_account_id=MERCHANT_ACCOUNT,
        amount=1234,
        currency=840,
        reference="visa:rrn:000000000042",
    )


async def merchant_balance(ledger: PgLedger) -> int:
    return (await ledger.balances([MERCHANT_ACCOUNT]))[MERCHANT_ACCOUNT].credits_posted


async def test_posting_and_record_are_kept_together(db):
    """If a forwarded approval is posted with its record, then the transfer is applied and the record
    kept; the same call again applies nothing more and keeps one record."""
    ledger = await posting_ledger(db)
    store = PgForwardedTransactions(db)
    assert await store.post_and_record(posting(), forwarded()) is TransferResult.OK
    assert await store.find("POS00001:1123193500:000042") == forwarded()
    assert await store.post_and_record(posting(), forwarded()) is TransferResult.EXISTS
    assert (await merchant_balance(ledger), await stored_ids(db)) == (1234, {"POS00001:1123193500:000042"})


async def test_a_posting_the_ledger_refuses_keeps_no_record(db):
    """If the ledger refuses the posting (here: an account that may not go below zero), then its code
    comes back and no record is kept."""
    ledger = await posting_ledger(db)
    store = PgForwardedTransactions(db)
    result = await store.post_and_record(posting(debit=CAPPED_ACCOUNT), forwarded())
    assert result is TransferResult.EXCEEDS_CREDITS
    assert (await merchant_balance(ledger), await stored_ids(db)) == (0, set())


async def test_a_refused_record_takes_its_posting_with_it(db):
    """If the database refuses one record of a batch (here the table's check on the network name), then
    that caller gets the error and its posting is not applied either (one commit), while the postings
    and records of the others in the batch are."""
    ledger = await posting_ledger(db)
    store = PgForwardedTransactions(db)
    results: dict[str, TransferResult] = {}
    errors: list[str] = []

    async def post(transfer_id: str, network: str = "visa") -> None:
        entry = dataclasses.replace(forwarded(transfer_id), network=network)
        try:
            results[transfer_id] = await store.post_and_record(posting(transfer_id), entry)
        except asyncpg.PostgresError as exc:
            errors.append(f"{transfer_id}:{type(exc).__name__}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(post, "LEADER")
        await trio.testing.wait_all_tasks_blocked()  # the leader's statement is in flight: the rest queue
        nursery.start_soon(post, "GOOD1")
        nursery.start_soon(post, "BAD", "Not A Network!")
        nursery.start_soon(post, "GOOD2")
    assert results == {id_: TransferResult.OK for id_ in ("LEADER", "GOOD1", "GOOD2")}
    assert errors == ["BAD:CheckViolationError"]
    assert await stored_ids(db) == {"LEADER", "GOOD1", "GOOD2"}
    assert await ledger.lookup_transfers(["BAD"]) == {}
    assert await merchant_balance(ledger) == 3 * 1234
    assert store.posting_stats().batch_size_counts[3] == 1  # the three queued ones went in one statement


async def test_posting_and_record_refuse_mismatched_or_card_data_before_anything(db):
    """If the record is of another transfer, or would keep card data, then ValueError and nothing is
    applied or kept."""
    ledger = await posting_ledger(db)
    store = PgForwardedTransactions(db)
    with pytest.raises(ValueError, match="own transfer id"):
        await store.post_and_record(posting("ONE"), forwarded("OTHER"))
    with pytest.raises(ValueError, match="without card data"):
        await store.post_and_record(posting(), forwarded(f2=PAN))
    assert (await merchant_balance(ledger), await stored_ids(db)) == (0, set())
