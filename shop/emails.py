"""Look-alike email addresses: two accounts must never read the same to a maker.

An address is first put in Unicode NFKC form (full-width letters become their plain twins),
then refused when a part of it (the local part, or one label of the domain) mixes letters of
more than one script ("paypal" with a Cyrillic "a"), or is written entirely in Cyrillic or
Greek letters that all have a Latin twin (Cyrillic "a", "r", "r" reads as "app"). Genuine
non-Latin addresses (a Russian name at a .rf domain) stay welcome.

One mailbox, one account: :func:`mailbox` names the inbox an address reaches, so that
``ann+1@…`` and ``a.nn@gmail.com`` cannot each make another account for the same person.
"""

from __future__ import annotations

import unicodedata

# Letters that render like a Latin letter in common fonts (after lower-casing).
_LATIN_TWINS = {
    "CYRILLIC": set("аеорсухіјѕԁԛԝһүӏвкмнт"),
    "GREEK": set("αεικνορτυχ"),
}

LOOK_ALIKE_MESSAGE = (
    "That address mixes letters from different alphabets, or uses letters that look like "
    "Latin ones. Please type it with the letters of one alphabet."
)


def nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _script(char: str) -> str | None:
    """The script of a letter (the first word of its Unicode name); None for anything else."""
    if not char.isalpha():
        return None
    return unicodedata.name(char, "UNKNOWN").split(" ")[0]


def is_look_alike(address: str) -> bool:
    """True when some part of ``address`` (already NFKC, lower-cased) could pass for another."""
    local, _, domain = address.rpartition("@")
    for part in (local, *domain.split(".")):
        letters = [c for c in part if c.isalpha()]
        scripts = {_script(c) for c in letters}
        if len(scripts) > 1:
            return True
        if len(scripts) == 1:
            twins = _LATIN_TWINS.get(scripts.pop())
            if twins is not None and all(c in twins for c in letters):
                return True
    return False


# Domains whose mail ignores dots in the local part (Gmail's two names for one service).
_DOTLESS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def mailbox(address: str) -> str:
    """The inbox ``address`` (already normalised: NFKC, lower-cased) reaches, for the rule "one
    account per mailbox" only — mail still goes to the address as given. A ``+tag`` is dropped
    from the local part (the sub-addressing of Gmail, Outlook, iCloud, Fastmail, Proton and
    most servers), and Gmail ignores dots: ``a.nn+shop@googlemail.com`` is ``ann@gmail.com``."""
    local, _, domain = address.rpartition("@")
    base = local.split("+", 1)[0] or local
    if domain in _DOTLESS:
        base, domain = base.replace(".", "") or base, _DOTLESS[domain]
    return f"{base}@{domain}"
