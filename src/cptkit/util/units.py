"""Token counts written the way people write them: `50B`, `0.84B`, `850M`, `12k`, `1_000_000`.

Suffixes are decimal (K = 1e3, M = 1e6, B/G = 1e9, T = 1e12), case-insensitive, as in papers and model cards.
"""

from __future__ import annotations

import math
import re

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}
_PATTERN = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9_]+)?(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBgGtT]?)\s*$")


def parse_tokens(value: str | int | float) -> int:
    """Parse a token count; raises ValueError with a message suited to a field error."""
    if isinstance(value, bool):
        raise ValueError(f"expected a token count like '8B' or '850M', got {value!r}")
    if isinstance(value, int):
        number = float(value)
    elif isinstance(value, float):
        number = value
    else:
        m = _PATTERN.match(str(value))
        if not m:
            raise ValueError(f"cannot parse {value!r} as a token count; write e.g. '8B', '0.84B', '850M' or 1000000")
        number = float(m.group(1).replace("_", "")) * _SUFFIX[m.group(2).lower()]
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"token count must be a non-negative number, got {value!r}")
    return round(number)


def format_tokens(n: float) -> str:
    """Human form: 50.00B, 846.0M, 12.3k."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.{2 if suffix in 'TB' else 1}f}{suffix}"
    return f"{n:.0f}"
