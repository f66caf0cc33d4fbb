"""PRC resident ID card numbers: the ISO 7064 MOD 11-2 check character, and the check a
registration runs on an ID number (an 18-character card number or a passport-like number)."""
from __future__ import annotations

import re

from shared.errors import Invalid

_ID_CARD = re.compile(r"^[0-9]{17}[0-9X]$")
_PASSPORT = re.compile(r"^[A-Z0-9]{5,20}$")
_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]


def check_digit(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of an 18-character resident ID card number."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS)) % 11]


def with_check_digit(first17: str) -> str:
    """``first17`` (17 digits) completed into a valid 18-character ID card number."""
    return first17 + check_digit(first17)


def check_id_number(value: str, field: str = "id_number") -> str:
    """An 18-character PRC resident ID card number with a correct check digit, or a passport-like
    number of 5-20 uppercase letters and digits (never 18 characters long); else :class:`Invalid`
    naming ``field`` and what to do."""
    if len(value) == 18:
        if not _ID_CARD.match(value):
            raise Invalid(
                f"{field}: an 18-character number must be a resident ID card number, 17 digits then a "
                "digit or an uppercase X",
                field=field,
            )
        expected = check_digit(value[:17])
        if value[17] != expected:
            raise Invalid(
                f"{field}: the check digit is wrong (last character {value[17]!r}, expected {expected!r}); "
                "compare the number with the ID card",
                field=field,
            )
        return value
    if value.isdigit() and 15 <= len(value) <= 19:
        raise Invalid(
            f"{field} has {len(value)} digits: a resident ID card number has 18 characters; "
            "check for a missing or extra digit",
            field=field,
        )
    if not _PASSPORT.match(value):
        raise Invalid(
            f"{field} must be an 18-character resident ID card number or a passport number of 5 to 20 "
            "uppercase letters and digits",
            field=field,
        )
    return value
