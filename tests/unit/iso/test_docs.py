"""docs/dialects.md: its hex examples are what the codec produces today.

Run as a module (`python -m tests.unit.iso.test_docs`) to rewrite the examples after a dialect change.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from switch.iso import DIALECT_NAMES, Codec
from switch.iso.samples import hex_dump, typical_0200

DOC = Path(__file__).resolve().parents[3] / "docs" / "dialects.md"
_BLOCK = re.compile(r"<!-- hex:(?P<name>\w+) -->\n```text\n(?P<dump>.*?)\n```", re.S)


def example_dump(name: str) -> str:
    message, header = typical_0200(name)
    return hex_dump(Codec(name).encode_frame(message, header))


def _documented() -> dict[str, str]:
    return {m["name"]: m["dump"] for m in _BLOCK.finditer(DOC.read_text(encoding="utf-8"))}


def test_every_dialect_has_an_example() -> None:
    """If the dialect page is read, then it has exactly one hex example per dialect."""
    assert sorted(_documented()) == sorted(DIALECT_NAMES)


@pytest.mark.parametrize("name", DIALECT_NAMES)
def test_example_matches_codec(name: str) -> None:
    """If a dialect's typical 0200 is encoded now, then the documented hex dump is identical."""
    assert _documented()[name] == example_dump(name)


def _rewrite() -> None:
    text = DOC.read_text(encoding="utf-8")
    text = _BLOCK.sub(lambda m: f"<!-- hex:{m['name']} -->\n```text\n{example_dump(m['name'])}\n```", text)
    DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    _rewrite()
