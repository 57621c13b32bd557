"""netsim's acquirer, pure: /originate bodies, and the requests and reversals it builds per dialect."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from simulators.messages import SimulatorError, demo_card
from simulators.netsim.acquirer import OriginateError, OriginateSpec, Originator, parse_originate
from simulators.netsim.keys import ZoneKey
from specs import demo
from specs.demo_networks import network
from switch.iso.codec import Codec

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
ZONE_KEY = ZoneKey.of(3, bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"))


def test_empty_body_is_one_purchase_of_the_first_card_with_the_demo_pin():
    """If the body is empty, then one 0200 purchase of 10.00 with the demo PIN is asked for."""
    spec = parse_originate({})
    assert (spec.count, spec.mti, spec.type, spec.amount_minor, spec.pin, spec.pan) == (
        1,
        "0200",
        "purchase",
        1000,
        demo.DEMO_PIN,
        None,
    )


def test_null_pin_means_no_pin_block():
    """If the body's pin is null, then the spec carries no PIN."""
    assert parse_originate({"pin": None}).pin is None


def test_preauthorization_must_be_a_purchase():
    """If a 0100 asks another type, then the body is refused."""
    with pytest.raises(OriginateError, match="0100"):
        parse_originate({"mti": "0100", "type": "refund"})


def test_spec_repr_hides_pan_and_pin():
    """If a spec is printed, then neither its PAN nor its PIN shows."""
    text = repr(OriginateSpec(pan="4761739001010010", pin="4826"))
    assert "4761739001010010" not in text and "4826" not in text


@pytest.mark.parametrize("name", ["visa", "cups", "shetab"])
def test_built_request_meets_the_dialect_and_encodes(name):
    """If a purchase is built, then it has every mandatory field of the dialect and encodes."""
    originator = Originator(network(name))
    spec = parse_originate({"currency": 364} if name == "shetab" else {})
    message = originator.request(
        spec, demo_card(), stan="000123", now_utc=NOW, rrn="260630000001", zone_key=ZONE_KEY
    )
    codec = Codec(name)
    codec.validate(message)
    assert codec.decode_frame(codec.encode_frame(message, originator.header())).message == message
    assert (message[7], message[11], message[53]) == ("0304050607", "000123", "2001010300000000")


def test_default_currency_is_the_members_when_the_network_has_it():
    """If no currency is asked, then Visa uses 840 (the demo bank's) and Shetab its only one, 364."""
    assert Originator(network("visa")).default_currency() == 840
    assert Originator(network("shetab")).default_currency() == 364


def test_pin_without_a_key_is_an_error():
    """If a PIN is asked and no ZPK exists, then building fails with a message about the key exchange."""
    with pytest.raises(SimulatorError, match="key exchange"):
        Originator(network("visa")).request(
            OriginateSpec(), demo_card(), stan="000001", now_utc=NOW, rrn="1", zone_key=None
        )


@pytest.mark.parametrize("name", ["visa", "cups", "shetab"])
def test_reversal_names_the_original_in_field_90(name):
    """If a request is reversed, then the 0420 meets the dialect and field 90 holds MTI, STAN, time and institutions."""
    originator = Originator(network(name))
    original = originator.request(
        parse_originate({"pin": None}),
        demo_card(),
        stan="000123",
        now_utc=NOW,
        rrn="260630000001",
        zone_key=None,
    )
    reversal = originator.reversal(original, stan="000124", now_utc=NOW, actual_amount_minor=250)
    Codec(name).validate(reversal)
    assert reversal[90][:20] == "0200" + "000123" + "0304050607"
    assert reversal[90][20:31] == network(name).network_id.rjust(11, "0")
    assert reversal[95][:12] == "000000000250"
    assert originator.reversal(original, stan="000124", now_utc=NOW, repeat=True).mti == "0421"


def test_advice_of_a_balance_inquiry_is_refused():
    """If a 0220 asks type balance, then the body is refused: an advice moves money."""
    with pytest.raises(OriginateError, match="0220"):
        parse_originate({"mti": "0220", "type": "balance"})


@pytest.mark.parametrize("name", ["visa", "cups", "shetab"])
def test_advice_carries_the_card_and_approval_but_no_track_or_pin(name):
    """If an advice is built (with the default PIN asked), then it is a 0220 with 2, 14, the network's auth
    code in 38 and 39 = 00, and no track 2 or PIN block; it encodes in the dialect."""
    originator = Originator(network(name))
    spec = parse_originate({"mti": "0220", **({"currency": 364} if name == "shetab" else {})})
    card = demo_card()
    message = originator.request(spec, card, stan="000123", now_utc=NOW, rrn="260630000001", zone_key=None)
    assert message.mti == "0220"
    assert (message[2], message[14], message[38], message[39]) == (
        card.pan,
        card.expiry_yymm,
        f"{name[0].upper()}00123",
        "00",
    )
    assert not {35, 52, 53} & set(message.fields)
    codec = Codec(name)
    assert codec.decode_frame(codec.encode_frame(message, originator.header())).message == message
