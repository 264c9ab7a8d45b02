"""Writes src/dreamlake/_pow5.h, the powers of 5 that the core's shortest float formatting uses.

    python tools/pow5.py          # rewrite the header
    python tools/pow5.py --check  # exit 1 if the header is not what this script writes

Each power is kept to 125 bits, as 2 words (low, high): `POW5[i]` is 5**i truncated to its top
125 bits; `POW5_INV[i]` is 2**(bits(5**i) - 1 + 125) // 5**i + 1, a multiplier that divides by 5**i.
The sizes cover every finite double's binary exponent.
"""

import sys
from pathlib import Path

BITS = 125
POW5_SIZE, POW5_INV_SIZE = 326, 342
HEADER = Path(__file__).resolve().parent.parent / "src" / "dreamlake" / "_pow5.h"


def words(n: int) -> str:
    mask = (1 << 64) - 1
    return f"{{0x{n & mask:016x}u, 0x{n >> 64:016x}u}}"


def text() -> str:
    pow5, inv = [], []
    for i in range(POW5_SIZE):
        p = 5**i
        shift = p.bit_length() - BITS
        pow5.append(words(p >> shift if shift > 0 else p << -shift))
    for i in range(POW5_INV_SIZE):
        p = 5**i
        inv.append(words((1 << (p.bit_length() - 1 + BITS)) // p + 1))

    def table(name: str, rows: list[str]) -> str:
        body = "".join(f"    {w},\n" for w in rows)
        return f"static const uint64_t {name}[{len(rows)}][2] = {{\n{body}}};\n"

    return (
        "/* Written by tools/pow5.py: do not edit. Powers of 5 to 125 bits, (low, high) words. */\n"
        f"#define POW5_BITS {BITS}\n" + table("POW5", pow5) + table("POW5_INV", inv)
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if HEADER.read_text() == text() else 1)
    if sys.argv[1:]:
        sys.exit("usage: python tools/pow5.py [--check]")
    HEADER.write_text(text())
