"""Registration codes printed ahead of a screening round: 8 characters of Crockford base32.

A code on a slip ties a sample to a person (the elderly without a phone bring it to the sampling
point), so it is a credential like a pass number: random (:mod:`secrets`), kept in
``quarantine.sample_codes``, never in an event. 32^8 ≈ 1.1e12 codes: a round of 7,000 residents
draws a clash about once in 40,000 rounds, and the table's unique index turns one into a retry of
the command. Crockford's alphabet leaves out I, L, O and U, so a code copied by hand survives:
reading back, ``O`` is ``0``, ``I`` and ``L`` are ``1``; case, dashes and spaces are ignored.
"""
from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 8
_READ = {c: c for c in ALPHABET} | {"O": "0", "I": "1", "L": "1"}


def new_code() -> str:
    """A fresh random code (impure: the handler calls it, never the rules)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalize(text: str) -> str | None:
    """The code a person typed or scanned, canonical, or None when it cannot be one."""
    out = [_READ.get(c) for c in text.upper() if c not in "- "]
    return "".join(out) if len(out) == LENGTH and None not in out else None  # type: ignore[arg-type]


def pretty(code: str) -> str:
    """How a code is printed on the slip: two groups of four (``7K3Q-DX9M``)."""
    return f"{code[:4]}-{code[4:]}"
