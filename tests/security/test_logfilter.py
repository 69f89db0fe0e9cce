"""The log filter: any Luhn-valid 13-19 digit sequence is masked, whatever logged it."""
from __future__ import annotations

import io
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ulid import ULID

from chalicelib.observability import logmask
from chalicelib.domain.cards import holds_pan, luhn_ok, mask_pans
from chalicelib.observability.logmask import PanMaskingFilter
from chalicelib.domain.cards import is_card_number as luhn_valid

TEST_PANS = ["4242424242424242", "4000000000000002", "4000000000009995", "4000000000000119",
             "4000000000000077", "4000000000000101", "5555555555554444", "378282246310005",
             "6011111111111117", "4222222222222", "6759649826438453"]


def _with_check_digit(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


@pytest.mark.parametrize("pan", TEST_PANS)
@pytest.mark.parametrize("shape", ["{}", "card={}", "x{}y", '{{"number": "{}"}}', "{} and more"])
def test_every_test_pan_is_masked_keeping_last4(pan, shape):
    out = mask_pans(shape.format(pan))
    assert pan not in out
    assert f"****{pan[-4:]}" in out


@pytest.mark.parametrize("text", ["4242 4242 4242 4242", "4242-4242-4242-4242", "3782 822463 10005"])
def test_grouped_card_numbers_are_masked(text):
    out = mask_pans(f"pan {text} end")
    assert text not in out and "****" in out


@pytest.mark.parametrize("text", [
    "4242424242424241",                  # Luhn-invalid
    "79927398713",                       # Luhn-valid but 11 digits
    "142424242424242424242",             # a PAN embedded in a 21-digit run: not a card number
    "1764030000123",                     # epoch ms, Luhn-invalid
    "pay_01JD0000000000000000000001",    # ULID
    "2026-11-25T10:00:00.000000Z"])
def test_other_digit_runs_are_left_alone(text):
    assert mask_pans(text) == text


def test_a_run_inside_a_platform_id_is_no_card_number_but_one_shaped_like_it_is():
    run = "8890112345000"
    assert luhn_ok(run) and holds_pan(run)
    ulid = "01M" + run + "ABCDEFGHJK"  # its first 10 characters spell a time of 2026
    assert ULID.from_str(ulid).datetime.year == 2026
    assert not holds_pan("evt_" + ulid) and not holds_pan(f'{{"causation_id": "evt_{ulid}"}}')
    for text in ("order_4242424242424242ABCDEFGHJK", "x" + ulid, "evt_" + ulid[:-1], "evt_01M" + run,
                 "evt_" + ulid.lower()):
        assert holds_pan(text), text


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet="0123456789", min_size=12, max_size=18), st.text(alphabet="abc _:=\"{", max_size=5),
       st.text(alphabet="abc _:=\"}", max_size=5))
def test_any_luhn_valid_13_to_19_digit_number_is_masked(body, before, after):
    pan = _with_check_digit(body)
    out = mask_pans(before + pan + after)
    assert pan not in out
    assert not any(luhn_valid(run) and 13 <= len(run) <= 19 for run in _digit_runs(out))


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=80))
def test_masking_never_adds_or_reveals_anything(text):
    out = mask_pans(text)
    assert mask_pans(out) == out
    if not any(luhn_valid(r) and 13 <= len(r) <= 19 for r in _digit_runs(text)) and "-" not in text \
            and " " not in text:
        assert out == text


def _digit_runs(text: str) -> list[str]:
    import re
    return re.findall(r"\d+", text)


def _capture(logger: logging.Logger) -> io.StringIO:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logging.Formatter("%(message)s %(error)s"))
    handler.addFilter(PanMaskingFilter())
    logger.addHandler(handler)
    return buf


def test_filter_masks_message_args_extra_and_exception():
    logger = logging.getLogger("payments.test.logfilter")
    logger.propagate = False
    buf = _capture(logger)
    try:
        raise ValueError("bad card 4000000000000002")
    except ValueError:
        logger.exception("charging %s failed", "4242424242424242", extra={"error": "card 5555555555554444"})
    text = buf.getvalue()
    assert "Traceback" in text and "ValueError" in text
    for pan in ("4242424242424242", "4000000000000002", "5555555555554444"):
        assert pan not in text, text
    assert "****4242" in text and "****0002" in text and "****4444" in text


def test_install_masks_records_of_any_logger_through_the_root_handlers(caplog):
    logmask.install()
    logmask.install()  # idempotent
    logger = logging.getLogger("logfilter_probe.anywhere.deep")
    logger.disabled, logger.propagate = False, True
    with caplog.at_level(logging.INFO, logger="logfilter_probe.anywhere.deep"):
        logger.info("number %s", "4000000000000077")
    assert "4000000000000077" not in caplog.text
    assert "****0077" in caplog.text
    factory = logging.getLogRecordFactory()
    record = factory("x", logging.INFO, __file__, 1, "pan %s", ("378282246310005",), None)
    assert "378282246310005" not in record.getMessage()


class _Card:
    def __str__(self) -> str:
        return "card 6011111111111117"


def test_extra_fields_of_any_type_are_masked_keeping_their_shape():
    """A structured (JSON) formatter reads record attributes, not the message: those are masked too."""
    factory = logging.getLogRecordFactory()
    record = factory("x", logging.INFO, __file__, 1, "refused %s / %d", ("card 378282246310005", 4000000000000077),
                     None)
    for name, value in {
            "pan_int": 4242424242424242, "pan_bytes": b"n=5555555555554444",
            "nested": {"card": {"number": "4000000000000002", "exp": 12}, "ids": ["pay_1", 4222222222222]},
            "as_tuple": ("4000000000009995", 7), "obj": _Card(), "plain": {"amount": 1999, "ok": True}}.items():
        setattr(record, name, value)
    logmask.scrub(record)
    dump = repr(vars(record)) + record.getMessage()
    for pan in ("378282246310005", "4000000000000077", "4242424242424242", "5555555555554444", "4000000000000002",
                "4222222222222", "4000000000009995", "6011111111111117"):
        assert pan not in dump, pan
    assert record.nested["card"]["exp"] == 12 and record.nested["ids"][0] == "pay_1"  # shape kept
    assert record.nested["card"]["number"].endswith("****0002]") and isinstance(record.as_tuple, tuple)
    assert record.plain == {"amount": 1999, "ok": True} and record.as_tuple[1] == 7


def test_a_json_formatter_sees_no_pan_in_extra(caplog):
    import json as _json

    logmask.install()
    logger = logging.getLogger("logfilter_probe.json")
    with caplog.at_level(logging.INFO, logger="logfilter_probe.json"):
        logger.info("payment refused", extra={"card_number": 4242424242424242,
                                              "request": {"payment_method": {"card": {"number": "4000000000000002"}}}})
    (record,) = [r for r in caplog.records if r.name == "logfilter_probe.json"]
    line = _json.dumps({k: v for k, v in vars(record).items() if k in ("card_number", "request")})
    assert "4242424242424242" not in line and "4000000000000002" not in line and "****4242" in line
