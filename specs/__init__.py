"""Dialect definitions as data: one module per network or terminal dialect.

Each module holds one `DEFINITION` dict (framing, header, MTI and bitmap encoding, the encoding of each
ISO 8583 field type, field overrides, mandatory fields per MTI). They are Python literals rather than
JSON or TOML files so that assumptions can sit as comments next to the value they explain and so that
loading a dialect is an import, not file I/O. `switch.iso.dialect.load_dialect` validates and expands
them. Adding a network is adding a module here and its name to `NAMES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

NAMES: tuple[str, ...] = ("terminal", "visa", "cups", "shetab")


def definition(name: str) -> Mapping[str, object]:
    """The raw definition dict of one dialect; KeyError if the name is not a known dialect."""
    if name not in NAMES:
        raise KeyError(name)
    module = importlib.import_module(f"specs.{name}")
    raw: Mapping[str, object] = module.DEFINITION
    return raw
