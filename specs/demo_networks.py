"""The demo interbank world as data: what the seed configures on the switch side and what `netsim` plays.

Shared by the switch's demo seed and config defaults and by the network simulators (outside actors), so
both agree on ports, institution IDs, BINs, currencies, test cards and the zone master keys without either
importing the other. Every key and PIN here is TEST DATA, published in docs/networks.md: never use them
for real cards.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "NETWORKS",
    "NETWORK_CARD_COUNT",
    "NETWORK_EXPIRED_YYMM",
    "NETWORK_EXPIRY_YYMM",
    "NETWORK_OPENING_BALANCE",
    "NETWORK_OTHER_PIN",
    "NETWORK_PIN",
    "NETWORK_SPECIAL_CARDS",
    "DemoNetwork",
    "network",
]

NETWORK_PIN = "1234"  # every netsim card's PIN unless NETWORK_SPECIAL_CARDS says otherwise
NETWORK_CARD_COUNT = 500  # cards per BIN, numbered 1..N like the demo bank's (specs.demo.demo_pan)
NETWORK_OPENING_BALANCE = 500_000  # minor units, in each of the network's currencies
NETWORK_EXPIRY_YYMM = "3012"
NETWORK_EXPIRED_YYMM = "2001"  # the "expired" special card's expiry
NETWORK_OTHER_PIN = "4321"  # the "other_pin" special card's PIN


@dataclass(frozen=True, slots=True)
class DemoNetwork:
    name: str  # also the dialect name (specs/<name>.py)
    port: int  # netsim's link port: the switch connects here
    control_port: int  # netsim's HTTP control API
    acquirer_id: str  # our institution as acquirer on this network: field 32 of what we send
    forwarding_id: str  # our forwarding institution ID: field 33 (CUPS requires it)
    network_id: str  # the network's institution ID: field 100 of what we send, 32 of what it originates
    bins: tuple[str, ...]  # BINs of the network's own card base (netsim is their issuer)
    currencies: tuple[int, ...]  # ISO 4217 numeric codes netsim's cards transact in
    # The zone master key shared by the switch and the network (clear, double-length TDES, odd parity).
    # The switch holds it only under the LMK; working ZPKs travel under it in key exchanges.
    zmk_hex: str
    # Visa BASE I header station IDs (6 digits each): the network's and ours.
    station_id: str = "000000"
    our_station_id: str = "000000"


NETWORKS: tuple[DemoNetwork, ...] = (
    DemoNetwork(
        name="visa",
        port=9583,
        control_port=9683,
        acquirer_id="990001",
        forwarding_id="990001",
        network_id="400001",
        bins=("476173", "400555"),
        currencies=(840, 978),
        zmk_hex="2315208C9110AD4040791CDC6E6EA885",  # KCV 3FA0F6
        station_id="400001",
        our_station_id="990001",
    ),
    DemoNetwork(
        name="cups",
        port=9584,
        control_port=9684,
        acquirer_id="99000100001",
        forwarding_id="99000100001",
        network_id="00010000",
        bins=("622126", "621700"),
        currencies=(156, 840),
        zmk_hex="4CA2161637D0133EC29238A7A726D3B5",  # KCV 3DA02D
    ),
    DemoNetwork(
        name="shetab",
        port=9585,
        control_port=9685,
        acquirer_id="990001",
        forwarding_id="990001",
        network_id="581672",
        bins=("603799", "589210", "627353", "610433", "621986"),
        currencies=(364,),
        zmk_hex="0D7F2A34A4E9D6B057674F15701F7667",  # KCV 5DC7BF
    ),
)

# Cards with a story, per network: (BIN index into `bins`, card number) -> what the issuer does with them.
# Same index scheme as specs.demo.SPECIAL_CARDS.
NETWORK_SPECIAL_CARDS: dict[str, tuple[int, int]] = {
    "insufficient_funds": (0, 2),  # balance 0
    "lost": (0, 3),  # answered 41
    "stolen": (0, 4),  # answered 43
    "expired": (0, 5),  # expiry 2001: answered 54
    "other_pin": (0, 6),  # PIN 4321
}


def network(name: str) -> DemoNetwork:
    """The demo network of this name; KeyError if there is none."""
    for candidate in NETWORKS:
        if candidate.name == name:
            return candidate
    raise KeyError(name)
