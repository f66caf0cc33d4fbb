"""Printed pass numbers: 10 characters of Crockford base32, random, hard to guess.

32^10 ≈ 1.1e15 numbers, drawn with :mod:`secrets`: a guard typing a made-up number has about one
chance in 10^9 of hitting any of a million issued passes. Crockford's alphabet leaves out I, L, O
and U, so a number read aloud or copied by hand survives: reading back, ``O`` is taken for ``0``
and ``I``/``L`` for ``1``, case, dashes and spaces are ignored.

:func:`new_number` is the one impure function here; the handler calls it and hands the numbers to
the pure domain on its facts. Uniqueness is the table's unique index (a clash, about one in 10^9
per bulk issue, fails the transaction and the runtime decides the command again, with new numbers).
"""
from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 10
_BITS = 5 * LENGTH
_READ = {c: c for c in ALPHABET} | {"O": "0", "I": "1", "L": "1"}


def new_number() -> str:
    """A fresh random pass number (impure: call it in the handler, never in the domain)."""
    return encode(secrets.randbits(_BITS))


def encode(value: int) -> str:
    chars = []
    for _ in range(LENGTH):
        value, digit = divmod(value, 32)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def normalize(text: str) -> str | None:
    """The canonical number a person typed or scanned, or None if it cannot be one."""
    out = []
    for c in text.upper():
        if c in "- ":
            continue
        mapped = _READ.get(c)
        if mapped is None:
            return None
        out.append(mapped)
    return "".join(out) if len(out) == LENGTH else None


def pretty(number: str) -> str:
    """How a number is printed on the card: two groups of five (``7K3QD-X9M2A``)."""
    return f"{number[:5]}-{number[5:]}"
