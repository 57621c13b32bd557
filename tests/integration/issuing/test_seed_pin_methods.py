"""The demo seed's IBM 3624 offset product and DUKPT terminals: what the directory reads back, and how a
world seeded by an earlier version (without them) gets them."""

from __future__ import annotations

from hsm.client import HsmClient
from hsm.crypto.pinverify import ibm3624_offset
from specs import demo
from switch.adapters.postgres.db import Database
from switch.adapters.postgres.directory import PgDirectory
from switch.adapters.postgres.ledger import PgLedger
from switch.cli.demo_seed import card_account_ids, seed_demo
from switch.domain.model import DukptPinPad, Pan, PinMethod
from switch.domain.pan_vault import PanVault


async def test_seeded_ibm_cards_hold_the_offset_of_the_demo_pin(
    db: Database, ledger: PgLedger, hsm_client: HsmClient, vault: PanVault, directory: PgDirectory
) -> None:
    """If the world is seeded, then an IBM card's offset is that of PIN 1234 under the demo IBM parameters."""
    await seed_demo(db, ledger, hsm_client, vault)
    pan = demo.demo_pan(demo.IBM_BIN, 42)
    card = await directory.card_by_pan(Pan(pan))
    assert card is not None
    product = card.product
    assert product.pin_method is PinMethod.IBM_3624
    assert (product.decimalization_table, product.pin_validation_data, product.pin_check_length) == (
        demo.DEMO_DECIMALIZATION_TABLE,
        demo.DEMO_PIN_VALIDATION_DATA,
        demo.DEMO_IBM_CHECK_LENGTH,
    )
    account = pan[:-1][-12:]
    validation = demo.DEMO_PIN_VALIDATION_DATA.replace("N", account[-5:])
    expected = ibm3624_offset(
        bytes.fromhex(demo.DEMO_IBM_PVK_HEX),
        validation,
        demo.DEMO_PIN,
        demo.DEMO_DECIMALIZATION_TABLE,
        demo.DEMO_IBM_CHECK_LENGTH,
    )
    assert card.pin_verification_value == expected
    balances = await ledger.balances(list(card_account_ids(demo.IBM_BIN, 42)))
    assert {b.available for b in balances.values()} == {demo.DEBIT_OPENING_BALANCE}


async def test_seeded_dukpt_terminal_names_its_pin_pad(
    db: Database, ledger: PgLedger, hsm_client: HsmClient, vault: PanVault, directory: PgDirectory
) -> None:
    """If the world is seeded, then a DUKPT terminal comes with its key set, BDK and device id."""
    await seed_demo(db, ledger, hsm_client, vault)
    (terminal_id, (kind, device_id)), *_ = demo.DUKPT_TERMINALS.items()
    terminal = await directory.terminal(terminal_id)
    assert terminal is not None and terminal.kind == kind
    assert isinstance(terminal.dukpt, DukptPinPad)
    assert (terminal.dukpt.key_set_id, terminal.dukpt.device_id) == (demo.DUKPT_KEY_SET_ID, device_id)
    assert terminal.dukpt.bdk_under_lmk.startswith("U") and terminal.tak_under_lmk
    ordinary = await directory.terminal(demo.POS_TERMINALS[0])
    assert ordinary is not None and ordinary.dukpt is None


async def test_a_world_from_an_earlier_version_gets_the_new_pieces(
    db: Database, ledger: PgLedger, hsm_client: HsmClient, vault: PanVault
) -> None:
    """If a seeded world lacks the IBM product and DUKPT terminals, then the next seed adds just those."""
    await seed_demo(db, ledger, hsm_client, vault)
    # What a database seeded before these pieces existed looks like.
    await db.execute("DELETE FROM terminals WHERE terminal_id = ANY($1::text[])", list(demo.DUKPT_TERMINALS))
    await db.execute("DELETE FROM dukpt_key_sets")
    await db.execute(
        "DELETE FROM cards WHERE product_id = (SELECT product_id FROM products WHERE pin_method = 'ibm3624')"
    )
    await db.execute("DELETE FROM products WHERE pin_method = 'ibm3624'")
    await db.execute("DELETE FROM bin_ranges WHERE low_prefix = $1", demo.IBM_BIN)
    cards_before = await db.fetchval("SELECT count(*) FROM cards")

    again = await seed_demo(db, ledger, hsm_client, vault)

    assert not again.created
    assert (again.ibm_cards, again.dukpt_terminals) == (demo.IBM_CARD_COUNT, len(demo.DUKPT_TERMINALS))
    assert len(again.added) == 2
    assert await db.fetchval("SELECT count(*) FROM cards") == cards_before + demo.IBM_CARD_COUNT
    assert await db.fetchval("SELECT count(*) FROM terminals WHERE dukpt_key_set_id IS NOT NULL") == len(
        demo.DUKPT_TERMINALS
    )
    assert (await seed_demo(db, ledger, hsm_client, vault)).added == ()
