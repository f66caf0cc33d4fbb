"""Personal data stays home: what may be shown of a person on the bus."""
from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]")


def mask_name(name: str) -> str:
    """A display name that does not identify: 王小伟 -> 王*伟, 王伟 -> 王*, John Smith -> J*** S****."""
    name = name.strip()
    if _CJK.search(name):
        chars = "".join(name.split())
        if len(chars) <= 1:
            return "*"
        if len(chars) == 2:
            return chars[0] + "*"
        return chars[0] + "*" * (len(chars) - 2) + chars[-1]
    return " ".join(word[0] + "*" * (len(word) - 1) for word in name.split())
