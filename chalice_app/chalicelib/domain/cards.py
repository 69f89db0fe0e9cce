"""What counts as a card number (PAN), in a field or in free text: one rule set for I6.

The validation stage and the API refuse a card number that fails Luhn (is_card_number);
the API refuses free text that carries one (holds_pan); the log mask hides any Luhn-valid
run (mask_pans, broader on purpose); the PAN scan in tests/security uses inside_id and
epoch_ms so input checks and the scan agree. A run embedded in a longer digit run (a
timestamp, an id) is left alone.
"""
from __future__ import annotations

import re

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from ulid import ULID

# Bare digit runs, and 4-digit groups joined by one space or dash ("4242 4242 4242 4242").
# ASCII digits only: \d would also take other scripts' digits, which luhn_ok cannot read.
_BARE = re.compile(r"(?<![0-9])[0-9]{13,19}(?![0-9])")
_GROUPED = re.compile(r"(?<![0-9])(?<![0-9][ -])[0-9]{4}(?:[ -][0-9]{2,7}){2,4}(?![ -]?[0-9])")
# IBANs, compact or printed in groups of four ("GB82 WEST 1234 ..."): their digit runs pass Luhn
# one time in ten; holds_pan leaves out those that are valid IBANs (checksum and country format).
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)"
                   r"(?![A-Za-z0-9])")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a string of ASCII digits holds."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(number: str) -> bool:
    """A card number as a field holds it: 12-19 ASCII digits passing the Luhn check."""
    return number.isascii() and number.isdigit() and 12 <= len(number) <= 19 and luhn_ok(number)


def _card_digits(text: str) -> str | None:
    """The digits of `text` when they could be a card number (13-19 of them, Luhn-valid)."""
    digits = re.sub(r"[^0-9]", "", text)
    return digits if 13 <= len(digits) <= 19 and luhn_ok(digits) else None


def _mask(match: re.Match) -> str:
    digits = _card_digits(match.group(0))
    return match.group(0) if digits is None else "[PAN ****" + digits[-4:] + "]"


def mask_pans(text: str) -> str:
    """The text with every Luhn-valid 13-19 digit sequence replaced by its last four."""
    if not any(c.isdigit() for c in text):
        return text
    return _GROUPED.sub(_mask, _BARE.sub(_mask, text))


_HEX = frozenset("0123456789abcdefABCDEF") | frozenset(b"0123456789abcdefABCDEF")  # str and bytes
_BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's, as ULIDs spell it
_CROCKFORD = frozenset(_BASE32) | frozenset(_BASE32.encode())
_UNDERSCORE = frozenset(("_", ord("_")))
_ULID_MS = (1_500_000_000_000, 4_100_000_000_000)  # a ULID's first 10 characters: its ms, 2017-2099


def inside_id(text: str | bytes, start: int, end: int) -> bool:
    """Ids hold decimal runs by chance, so a Luhn-valid 13+ digit run inside one is no card number:
    - a hex token of 24+ characters with letters in it: uuid4 hex, SHA-256/HMAC digests, PSP
      charge ids ("ch_" + 24 hex); ~1 in 250 of 32-hex ids holds such a run;
    - this platform's ids (ids.py: prefix, "_", a ULID): a run inside the 26 Crockford base32
      characters after the underscore, when their first 10 spell a millisecond time of 2017-2099
      (so they start "01"-"03", and no card number, which never starts with 0, can stand for the
      ULID's head). Rare and time-dependent: the ULID's time characters must be decimal too.
    Used by holds_pan and by the PAN scan in tests/security (on raw bytes too, where a column's
    bytes may follow the id without a separator), so input checks and the scan agree."""
    lo, hi = start, end
    while lo > 0 and text[lo - 1] in _HEX:
        lo -= 1
    while hi < len(text) and text[hi] in _HEX:
        hi += 1
    if hi - lo >= 24 and not text[lo:hi].isdigit():
        return True
    lo = start
    while lo > 0 and text[lo - 1] in _CROCKFORD:
        lo -= 1
    ulid = text[lo:lo + 26]
    if not (lo > 0 and text[lo - 1] in _UNDERSCORE and end <= lo + 26 and len(ulid) == 26
            and all(c in _CROCKFORD for c in ulid) and not ulid.isdigit()):
        return False
    try:
        ms = ULID.from_str(ulid.decode() if isinstance(ulid, bytes) else ulid).milliseconds
    except ValueError:  # a head past 7: more than a ULID's 128 bits
        return False
    return _ULID_MS[0] <= ms < _ULID_MS[1]


def epoch_ms(run: str | bytes) -> bool:
    """Epoch milliseconds of 2017-2039 are 13 digits starting 15-22; no issuer uses 13-digit
    numbers there (13-digit PANs are Visa, starting with 4), so they are timestamps, not cards."""
    return len(run) == 13 and 1_500_000_000_000 <= int(run) < 2_200_000_000_000


def _valid_iban(text: str) -> bool:
    try:
        IBAN(text)
    except SchwiftyException:
        return False
    return True


def holds_pan(text: str) -> bool:
    """True when `text` carries a card number: a Luhn-valid 13-19 digit run, bare or in groups,
    that is not an epoch-milliseconds timestamp, part of an id (bare runs: hex, or this platform's
    ULIDs) or of a valid IBAN.
    The same rules as the PAN scan in tests/security. For refusing input: the log mask
    (mask_pans) is broader, and masks those too."""
    if not any(c.isdigit() for c in text):
        return False
    if any(c.isalpha() for c in text):
        text = _IBAN.sub(lambda m: " " * len(m.group(0)) if _valid_iban(m.group(0)) else m.group(0), text)
    for m in _BARE.finditer(text):
        run = m.group(0)
        if _card_digits(run) and not epoch_ms(run) and not inside_id(text, m.start(), m.end()):
            return True
    return any(_card_digits(m.group(0)) for m in _GROUPED.finditer(text))
