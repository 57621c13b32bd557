"""The demo seed: the whole demo world of specs/demo.py, created once, with real balances and keys the HSM
accepts."""

from __future__ import annotations

import time

import pytest

from hsm.client import HsmClient, InProcessTransport
from hsm.host.processor import HostCommandProcessor
from hsm.keys import KeyVault
from hsm.lmk import VariantLmk
from specs import demo
from switch.adapters.postgres.db import Database
from switch.adapters.postgres.directory import PgDirectory
from switch.adapters.postgres.ledger import PgLedger
from switch.cli.demo_seed import SeedError, card_account_ids, seed_demo
from switch.domain.model import AccountKind, CardStatus, Pan
from switch.domain.pan_vault import PanVault


async def test_seed_builds_the_demo_world_then_does_nothing(
    db: Database, ledger: PgLedger, hsm_client: HsmClient, vault: PanVault
) -> None:
    """If the seed runs twice, then the first builds every card, terminal and balance and the second nothing."""
    started = time.monotonic()
    first = await seed_demo(db, ledger, hsm_client, vault)
    print(f"seed took {time.monotonic() - started:.2f} s")
    assert first.created
    assert (first.debit_cards, first.prepaid_cards) == (demo.DEBIT_CARD_COUNT, demo.PREPAID_CARD_COUNT)
    assert (first.ibm_cards, first.dukpt_terminals) == (demo.IBM_CARD_COUNT, len(demo.DUKPT_TERMINALS))
    assert set(first.special_cards) == set(demo.SPECIAL_CARDS)
    counts = await db.fetchrow(
        "SELECT (SELECT count(*) FROM cards) AS cards, (SELECT count(*) FROM terminals) AS terminals, "
        "(SELECT count(*) FROM merchants) AS merchants, (SELECT count(*) FROM hot_list) AS hot"
    )
    assert counts is not None
    assert dict(counts) == {
        "cards": demo.DEBIT_CARD_COUNT + demo.PREPAID_CARD_COUNT + demo.IBM_CARD_COUNT + demo.RIAL_CARD_COUNT,
        "terminals": len(demo.POS_TERMINALS)
        + len(demo.ATM_TERMINALS)
        + len(demo.DUKPT_TERMINALS)
        + len(demo.RIAL_POS_TERMINALS),
        "merchants": 3,
        "hot": 1,
    }
    second = await seed_demo(db, ledger, hsm_client, vault)
    assert not second.created and not second.added
    assert await db.fetchval("SELECT count(*) FROM cards") == counts["cards"]


async def test_seeded_cards_match_the_spec(
    db: Database, ledger: PgLedger, hsm_client: HsmClient, vault: PanVault, directory: PgDirectory
) -> None:
    """If the world is seeded, then special cards have their status/expiry and accounts hold the balances."""
    await seed_demo(db, ledger, hsm_client, vault)
    ordinary = await directory.card_by_pan(Pan(demo.demo_pan(demo.DEBIT_BIN, 1)))
    assert ordinary is not None and ordinary.status is CardStatus.ACTIVE
    assert [a.kind for a in ordinary.accounts] == [AccountKind.CHECKING, AccountKind.SAVINGS]
    assert ordinary.expiry_yymm == demo.DEMO_EXPIRY_YYMM
    expected = {"lost": CardStatus.LOST, "stolen": CardStatus.STOLEN, "blocked": CardStatus.BLOCKED}
    for name, status in expected.items():
        card = await directory.card_by_pan(Pan(demo.demo_pan(*demo.SPECIAL_CARDS[name])))
        assert card is not None and card.status is status
    inactive = await directory.card_by_pan(Pan(demo.demo_pan(*demo.SPECIAL_CARDS["inactive"])))
    assert (
        inactive is not None and inactive.status is CardStatus.INACTIVE and inactive.activation_date is None
    )
    expired = await directory.card_by_pan(Pan(demo.demo_pan(*demo.SPECIAL_CARDS["expired"])))
    assert expired is not None and expired.expiry_yymm < "2611"
    hot = Pan(demo.demo_pan(*demo.SPECIAL_CARDS["hotlisted"]))
    entry = await directory.list_entry(hot, demo.POS_TERMINALS[0], demo.MERCHANT_ID)
    assert entry is not None and entry.response_code == "04"
    prepaid = await directory.card_by_pan(Pan(demo.demo_pan(demo.PREPAID_BIN, 1)))
    assert prepaid is not None and [a.kind for a in prepaid.accounts] == [AccountKind.PREPAID]
    low_ids = card_account_ids(*demo.SPECIAL_CARDS["low_balance"])
    balances = await ledger.balances(
        [*card_account_ids(demo.DEBIT_BIN, 1), *low_ids, *card_account_ids(demo.PREPAID_BIN, 1)]
    )
    assert balances[card_account_ids(demo.DEBIT_BIN, 1)[0]].available == demo.DEBIT_OPENING_BALANCE
    assert balances[low_ids[0]].available == 1_000
    assert balances[card_account_ids(demo.PREPAID_BIN, 1)[0]].available == demo.PREPAID_OPENING_BALANCE


async def test_seeded_pvv_verifies_the_demo_pin(
    db: Database, ledger: PgLedger, hsm_client: HsmClient, vault: PanVault, directory: PgDirectory
) -> None:
    """If a seeded card's PVV is checked against PIN 1234 (5678 for pin_5678), then the HSM agrees."""
    from hsm.crypto.pinverify import visa_pvv

    await seed_demo(db, ledger, hsm_client, vault)
    pvk = bytes.fromhex(demo.DEMO_PVK_HEX)
    for pan, pin in (
        (demo.demo_pan(demo.DEBIT_BIN, 7), demo.DEMO_PIN),
        (demo.demo_pan(*demo.SPECIAL_CARDS["pin_5678"]), "5678"),
    ):
        card = await directory.card_by_pan(Pan(pan))
        assert card is not None
        assert card.pin_verification_value == visa_pvv(pvk, pan, demo.DEMO_PVKI, pin)


async def test_seed_refuses_an_hsm_with_another_lmk(db: Database, ledger: PgLedger, vault: PanVault) -> None:
    """If the HSM's LMK is not the public test LMK, then the seed refuses and creates nothing."""
    other = VariantLmk(tuple(bytes([i + 2]) * 16 for i in range(20)))
    client = HsmClient(InProcessTransport(HostCommandProcessor(KeyVault(other))))
    with pytest.raises(SeedError, match="TEST LMK"):
        await seed_demo(db, ledger, client, vault)
    assert await db.fetchval("SELECT count(*) FROM institutions") == 0
