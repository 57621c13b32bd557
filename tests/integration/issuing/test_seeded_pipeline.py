"""The seeded demo world through the real pipeline: PostgreSQL directory and ledger, in-process HSM with
the test LMK. Checks that the data the seed writes is what the authorization pipeline needs."""

from __future__ import annotations

from datetime import UTC, datetime

import trio

from hsm.client import HsmClient
from hsm.crypto.cvv import card_verification_value
from hsm.crypto.pinblock import encrypt_pin_block
from hsm.keys import TAK, TPK, KeyVault
from hsm.lmk import VariantLmk
from specs import demo
from switch.adapters.hsm import ClientHsm
from switch.adapters.postgres.db import Database
from switch.adapters.postgres.directory import PgDirectory
from switch.adapters.postgres.ledger import PgLedger
from switch.cli.demo_seed import card_account_ids, seed_demo
from switch.domain.model import Pan
from switch.domain.pan_vault import PanVault
from switch.iso.codec import Codec
from switch.iso.message import Message
from switch.pipeline.authorize import Authorizer
from switch.ports import CardDirectory

CODEC = Codec("terminal")
TPK_CLEAR = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
TAK_CLEAR = bytes.fromhex("89ABCDEF0123456776543210FEDCBA98")


class SystemClock:
    # The real time: the seed makes its cards valid from the day it runs (activation date = today).
    def now(self) -> datetime:
        return datetime.now(UTC)


async def test_seeded_cards_get_the_documented_answers(
    db: Database, ledger: PgLedger, hsm_client: HsmClient, vault: PanVault, nursery: trio.Nursery
) -> None:
    """If demo cards are used as docs/demo.md says, then the pipeline answers with the documented codes."""
    await seed_demo(db, ledger, hsm_client, vault)
    directory = PgDirectory(db, vault)
    as_port: CardDirectory = directory  # PgDirectory implements the port (checked by mypy)
    await nursery.start(directory.run)
    keys = KeyVault(VariantLmk.test_lmk())
    await directory.set_terminal_keys(
        "POS00001", tpk_under_lmk=keys.wrap(TPK_CLEAR, TPK, "U"), tak_under_lmk=keys.wrap(TAK_CLEAR, TAK, "U")
    )
    authorizer = Authorizer(
        directory=as_port,
        ledger=ledger,
        hsm=ClientHsm(hsm_client),
        clock=SystemClock(),
        respond=lambda request, code: CODEC.response(request, response_code=code),
        encode=CODEC.encode_message,
    )
    pvv_by_pan: dict[str, str] = {}

    async def purchase(name_or_index: str | int, amount: int, pin: str, stan: int) -> str:
        if isinstance(name_or_index, str):
            pan = demo.demo_pan(*demo.SPECIAL_CARDS[name_or_index])
        else:
            pan = demo.demo_pan(demo.DEBIT_BIN, name_or_index)
        card = await directory.card_by_pan(Pan(pan))
        assert card is not None
        pvv_by_pan[pan] = card.pin_verification_value
        cvv = card_verification_value(bytes.fromhex(demo.DEMO_CVK_HEX), pan, card.expiry_yymm, "201")
        fields = {
            3: "000000",
            4: f"{amount:012d}",
            7: "1123193500",
            11: f"{stan:06d}",
            12: "193500",
            13: "1123",
            22: "021",
            25: "00",
            35: f"{pan}={card.expiry_yymm}2011{card.pin_verification_value}{cvv}",
            41: "POS00001",
            42: demo.MERCHANT_ID,
            49: "840",
            52: encrypt_pin_block(pin, pan, 0, TPK_CLEAR).hex().upper(),
        }
        outcome = await authorizer.handle(Message("0200", fields))
        assert outcome.response is not None
        return str(outcome.response[39])

    assert await purchase(1, 1_000, demo.DEMO_PIN, 1) == "00"
    checking = card_account_ids(demo.DEBIT_BIN, 1)[0]
    assert (await ledger.balances([checking]))[checking].available == demo.DEBIT_OPENING_BALANCE - 1_000
    expected = {
        "lost": "41",
        "stolen": "43",
        "blocked": "62",
        "expired": "54",
        "hotlisted": "04",
        "inactive": "57",
    }
    for stan, (name, code) in enumerate(expected.items(), start=10):
        assert await purchase(name, 1_000, demo.DEMO_PIN, stan) == code, name
    assert await purchase("low_balance", 2_000, demo.DEMO_PIN, 20) == "51"
    assert await purchase("pin_5678", 1_000, demo.DEMO_PIN, 21) == "55"
    assert await purchase("pin_5678", 1_000, "5678", 22) == "00"
    nursery.cancel_scope.cancel()
