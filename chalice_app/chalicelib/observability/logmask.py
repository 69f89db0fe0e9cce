"""Second line of defence for I6: no log line ever carries a card number.

Nothing should log a PAN in the first place (the vault decrypts it only for a
PSP call, AuthorizeRequest's repr hides it). This masks, in every log record
of the process, any 13-19 digit run that passes the Luhn check -- bare, or in
groups separated by spaces or dashes -- keeping the last four digits.
A run embedded in a longer digit run (a timestamp, an id) is left alone.
"""
from __future__ import annotations

import logging
import re
from typing import Any

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
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


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
    from schwifty import IBAN
    from schwifty.exceptions import SchwiftyException
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


def mask_value(value: Any, depth: int = 0) -> Any:
    """`value` with every PAN masked, keeping its shape: strings, numbers, bytes, and dicts,
    lists and tuples of them (recursively); any other object is replaced by its masked text
    if its text holds a PAN. A structured formatter (JSON logs) then finds nothing either."""
    if isinstance(value, str):
        return mask_pans(value)
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, int):
        text = str(value)
        masked = mask_pans(text)
        return value if masked == text else masked
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "replace")
        masked = mask_pans(text)
        return value if masked == text else masked
    if depth < 8 and type(value) is dict:
        return {mask_value(k, depth + 1): mask_value(v, depth + 1) for k, v in value.items()}
    if depth < 8 and type(value) in (list, tuple, set, frozenset):
        return type(value)(mask_value(v, depth + 1) for v in value)
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - an object that cannot print itself cannot print a PAN
        return value
    masked = mask_pans(text)
    return value if masked == text else masked


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def scrub(record: logging.LogRecord) -> logging.LogRecord:
    """Mask the formatted message (args merged in), the exception and stack text, and every `extra`
    attribute whatever its type, in place."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string is the formatter's problem, not ours
        message = str(record.msg)
    record.msg, record.args = mask_pans(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_pans(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_pans(record.stack_info)
    for name, value in list(vars(record).items()):
        if name not in _STANDARD:
            setattr(record, name, mask_value(value))
    return record


class PanMaskingFilter(logging.Filter):
    """A handler/logger filter that masks PANs and never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub(record)
        return True


_installed = False


def install() -> None:
    """Mask every record this process creates (any logger, any handler), once.

    A filter on the root logger alone would miss records logged on child loggers
    (logger filters do not see propagated records), so the record factory does the
    masking, and the root logger's handlers get the filter for records made elsewhere.
    """
    global _installed
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, PanMaskingFilter) for f in handler.filters):
            handler.addFilter(PanMaskingFilter())
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub(previous(*args, **kwargs))
    logging.setLogRecordFactory(factory)
    _installed = True
