"""Human sizes as restic and Stash print them ("4.154 KiB"), and back to bytes.

Stash writes sizes into status fields (``Repository.status.totalSize``, a snapshot's ``totalSize`` and
``uploaded``) as restic's binary units with three decimals; Prometheus wants bytes. ``format_size``
follows Stash's ``formatBytes`` exactly (a unit is used once the value is *above* it, so 1024 bytes is
``1024 B``); ``parse_size`` reads what it writes, plus restic's older ``12B`` spelling.
"""

from __future__ import annotations

import math
import re
from typing import Final

_UNITS: Final[dict[str, int]] = {
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "TiB": 1 << 40,
}
_FORMAT_ORDER: Final = ("TiB", "GiB", "MiB", "KiB")
_SIZE: Final = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """Bytes in a human size: ``"4.154 KiB"`` -> 4254, ``"12 B"`` / ``"12B"`` / ``"12"`` -> 12.

    Units are restic's binary ones (B, KiB, MiB, GiB, TiB), spelt exactly so. The result is rounded to
    whole bytes (three decimals of KiB are not exact). Raises ValueError on anything else, negative
    sizes included.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (expected e.g. '4.154 KiB' or '12 B')")
    unit = match["unit"] or "B"
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit {unit!r} in {text!r} (expected one of {', '.join(_UNITS)})")
    return round(float(match["number"]) * _UNITS[unit])


def format_size(size: int | float) -> str:
    """A byte count the way Stash writes it: ``4254`` -> ``"4.154 KiB"``, ``1024`` -> ``"1024 B"``."""
    if not math.isfinite(size) or size < 0:
        raise ValueError(f"not a byte count: {size!r}")
    count = int(size)
    for unit in _FORMAT_ORDER:
        if count > _UNITS[unit]:
            return f"{count / _UNITS[unit]:.3f} {unit}"
    return f"{count} B"
