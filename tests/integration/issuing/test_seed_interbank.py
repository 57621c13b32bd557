"""The demo seed's interbank pieces (docs/networks.md "Demo world"): routes, zone master keys the HSM
accepts, settlement accounts, the rial corner; added to a world seeded before they existed, once."""

from __future__ import annotations

from hsm.client import HsmClient
from hsm.crypto.des import kcv_tdes, tdes_ecb_encrypt, with_odd_parity
from specs import demo
from specs.demo_networks import NETWORKS
from switch.adapters.hsm import ClientHsm
from switch.adapters.postgres.db import Database
from switch.adapters.postgres.directory import PgDirectory
from switch.adapters.postgres.ledger import PgLedger
from switch.adapters.postgres.network_keys import PgNetworkKeyStore
from switch.adapters.postgres.routes import load_routing_table
from switch.cli.demo_seed import RIAL_MERCHANT_ACCOUNT_ID, card_account_ids, seed_demo
from switch.domain.model import Pan
from switch.domain.pan_vault import PanVault
from switch.domain.routing import DecisionKind, decide
from switch.pipeline.forward import network_settlement_account_id


async def test_seed_routes_foreign_demo_cards_to_their_networks(
    db: Database, ledger: PgLedger, hsm_client: HsmClient, vault: PanVault
) -> None:
    """If the world is seeded, then a card of each demo network routes to it and the rial BIN is ours."""
    await seed_demo(db, ledger, hsm_client, vault)
    table = await db.run(load_routing_table)
    for net in NETWORKS:
        pan = Pan(demo.demo_pan(net.bins[0], 1))
        decision = decide(table, pan=pan, amount=100, currency=net.currencies[0], link_up=lambda _: True)
        assert decision.kind is DecisionKind.NETWORK and decision.network == net.name
    rial = decide(
        table, pan=Pan(demo.demo_pan(demo.RIAL_BIN, 1)), amount=100, currency=364, link_up=lambda _: True
    )
    assert rial.kind is DecisionKind.ON_US


async def test_seeded_zone_master_keys_are_the_demo_keys_under_the_lmk(
    db: Database, ledger: PgLedger, hsm_client: HsmClient, vault: PanVault
) -> None:
    """If the world is seeded, then each network's ZMK is stored under the LMK and the HSM can import a
    key under it whose check value is the clear key's."""
    await seed_demo(db, ledger, hsm_client, vault)
    store = PgNetworkKeyStore(db)
    hsm = ClientHsm(hsm_client)
    zpk = with_odd_parity(bytes.fromhex("00112233445566778899AABBCCDDEEFF"))
    for net in NETWORKS:
        zmk = await store.zone_master_key(net.name)
        assert zmk is not None and zmk.startswith("U")
        under_zmk = tdes_ecb_encrypt(bytes.fromhex(net.zmk_hex), zpk).hex().upper()
        imported = await hsm.import_zone_pin_key(zmk=zmk, zpk_under_zmk=under_zmk)
        assert imported.check_value == kcv_tdes(zpk)


async def test_seed_creates_each_networks_settlement_accounts(
    db: Database, ledger: PgLedger, hsm_client: HsmClient, vault: PanVault
) -> None:
    """If the world is seeded, then every demo network has a settlement account in each of its currencies."""
    await seed_demo(db, ledger, hsm_client, vault)
    wanted = {
        network_settlement_account_id(net.name, currency): currency
        for net in NETWORKS
        for currency in net.currencies
    }
    balances = await ledger.balances(list(wanted))
    assert {account: b.currency for account, b in balances.items()} == wanted


async def test_seeded_rial_card_holds_rials_and_the_rial_terminal_its_merchant(
    db: Database, ledger: PgLedger, hsm_client: HsmClient, vault: PanVault, directory: PgDirectory
) -> None:
    """If the world is seeded, then a rial card transacts in 364 with its opening balance, and the rial
    terminal belongs to the rial merchant, whose settlement account is in rials."""
    await seed_demo(db, ledger, hsm_client, vault)
    card = await directory.card_by_pan(Pan(demo.demo_pan(demo.RIAL_BIN, 7)))
    assert card is not None and card.product.currency == demo.RIAL_CURRENCY
    balances = await ledger.balances([*card_account_ids(demo.RIAL_BIN, 7), RIAL_MERCHANT_ACCOUNT_ID])
    assert balances[card_account_ids(demo.RIAL_BIN, 7)[0]].available == demo.RIAL_OPENING_BALANCE
    assert balances[RIAL_MERCHANT_ACCOUNT_ID].currency == demo.RIAL_CURRENCY
    terminal = await directory.terminal(demo.RIAL_POS_TERMINALS[0])
    assert terminal is not None and terminal.merchant_id == demo.RIAL_MERCHANT_ID


async def test_a_world_seeded_before_the_networks_gets_them_once(
    db: Database, ledger: PgLedger, hsm_client: HsmClient, vault: PanVault
) -> None:
    """If a seeded world has no networks, ZMKs or rial corner, then the next seed adds them, and the one
    after adds nothing."""
    await seed_demo(db, ledger, hsm_client, vault)
    # What a database seeded before the interbank pieces looks like.
    await db.execute("DELETE FROM network_keys")
    await db.execute("DELETE FROM standin_rules")
    await db.execute("DELETE FROM route_rules")
    await db.execute("DELETE FROM network_bin_ranges")
    await db.execute("DELETE FROM networks")
    await db.execute(
        "DELETE FROM terminals WHERE terminal_id = ANY($1::text[])", list(demo.RIAL_POS_TERMINALS)
    )
    await db.execute("DELETE FROM merchants WHERE merchant_id = $1", demo.RIAL_MERCHANT_ID)
    await db.execute(
        "DELETE FROM cards WHERE product_id = (SELECT product_id FROM products WHERE currency = $1)",
        demo.RIAL_CURRENCY,
    )
    await db.execute("DELETE FROM products WHERE currency = $1", demo.RIAL_CURRENCY)
    await db.execute("DELETE FROM bin_ranges WHERE low_prefix = $1", demo.RIAL_BIN)

    again = await seed_demo(db, ledger, hsm_client, vault)

    assert not again.created and len(again.added) == 3
    assert await db.fetchval("SELECT count(*) FROM networks") == len(NETWORKS)
    assert await db.fetchval("SELECT count(*) FROM network_keys WHERE zmk_under_lmk <> ''") == len(NETWORKS)
    assert await db.fetchval("SELECT count(*) FROM cards WHERE first6 = $1", demo.RIAL_BIN) == (
        demo.RIAL_CARD_COUNT
    )
    assert (await seed_demo(db, ledger, hsm_client, vault)).added == ()


async def test_an_operators_route_change_survives_the_next_seed(
    db: Database, ledger: PgLedger, hsm_client: HsmClient, vault: PanVault
) -> None:
    """If an operator removes a demo BIN range, then the next seed (every `make run`) leaves it removed."""
    await seed_demo(db, ledger, hsm_client, vault)
    await db.execute("DELETE FROM network_bin_ranges WHERE low_prefix = '476173'")
    await seed_demo(db, ledger, hsm_client, vault)
    assert await db.fetchval("SELECT count(*) FROM network_bin_ranges WHERE low_prefix = '476173'") == 0
