"""The PSP simulator server and SimulatorConnector, end to end over real HTTP."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from chalicelib.connectors import build_connector
from chalicelib.connectors.secret import Secret
from chalicelib.connectors.simulator import SimulatorConnector
from laptop.psp_simulator import TEST_CARDS, luhn_valid, serve
from chalicelib.domain.psp import Outcome
from chalicelib.ports import AuthorizeRequest

TIMEOUT_DELAY = 0.6
CARD = {behaviour: number for number, (behaviour, _) in TEST_CARDS.items()}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    db = tmp_path_factory.mktemp("sim") / "sim.db"
    server, thread = serve("127.0.0.1", 0, str(db), TIMEOUT_DELAY)
    yield f"http://127.0.0.1:{server.server_address[1]}", db
    server.shutdown()
    server.server_close()
    thread.join(2)


@pytest.fixture(scope="module")
def base_url(sim):
    return sim[0]


def connector(base_url: str, name: str = "sim-a", timeout_s: float = 0.3) -> SimulatorConnector:
    return SimulatorConnector(name, base_url, timeout_s=timeout_s)


def auth(number: str, key: str | None = None, reference: str | None = None, amount: int = 1000):
    return AuthorizeRequest(idempotency_key=key or uuid.uuid4().hex, amount=amount, currency="EUR",
                            card={"number": number, "exp_month": 12, "exp_year": 2030},
                            reference=reference or uuid.uuid4().hex, correlation_id="corr-" + uuid.uuid4().hex)


def http_json(base_url: str, method: str, path: str, body: bytes | None = None, headers=None):
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_test_cards_are_16_digit_luhn_valid_and_cover_every_behaviour():
    assert all(len(n) == 16 and luhn_valid(n) for n in TEST_CARDS)
    assert set(CARD) == {"approve", "decline", "insufficient_funds", "soft_decline_first_psp",
                         "timeout_charged", "timeout_not_charged"}


def test_health(base_url):
    assert http_json(base_url, "GET", "/health") == (200, {"status": "ok"})


@pytest.mark.parametrize("behaviour,outcome,code", [
    ("approve", Outcome.APPROVED, None),
    ("decline", Outcome.DECLINED, "card_declined"),
    ("insufficient_funds", Outcome.DECLINED, "insufficient_funds"),
])
def test_card_behaviours(base_url, behaviour, outcome, code):
    result = connector(base_url).authorize(auth(CARD[behaviour]))
    assert (result.outcome, result.code) == (outcome, code)
    assert result.latency_ms > 0
    if outcome is Outcome.APPROVED:
        assert result.psp_reference.startswith("ch_")


def test_unknown_luhn_valid_card_approves_and_non_luhn_declines(base_url):
    assert connector(base_url).authorize(auth("5555555555554444")).outcome is Outcome.APPROVED
    bad = connector(base_url).authorize(auth("4242424242424241"))
    assert (bad.outcome, bad.code) == (Outcome.DECLINED, "incorrect_number")


def test_an_expired_card_is_declined_as_issuers_do(base_url):
    # The API refuses expired cards (422), so this is a card that expired while its payment was in flight.
    req = auth(CARD["approve"])
    expired = AuthorizeRequest(req.idempotency_key, req.amount, req.currency,
                               {"number": CARD["approve"], "exp_month": 1, "exp_year": 2020},
                               req.reference, req.correlation_id)
    result = connector(base_url).authorize(expired)
    assert (result.outcome, result.code) == (Outcome.DECLINED, "expired_card")
    assert connector(base_url).authorize(auth(CARD["approve"])).outcome is Outcome.APPROVED  # good through 12/2030


def test_soft_decline_on_sim_a_approves_on_sim_b(base_url):
    req = auth(CARD["soft_decline_first_psp"])
    first = connector(base_url, "sim-a").authorize(req)
    assert (first.outcome, first.code) == (Outcome.SOFT_DECLINED, "try_again_later")
    assert connector(base_url, "sim-a").status(req.idempotency_key).outcome is Outcome.NOT_FOUND
    assert connector(base_url, "sim-b").authorize(req).outcome is Outcome.APPROVED
    _, stats = http_json(base_url, "GET", "/psp/sim-a/stats")
    assert req.reference not in stats["by_reference"]


def test_timeout_charged_is_unknown_then_found_by_status(base_url):
    req = auth(CARD["timeout_charged"])
    sim_a = connector(base_url)
    assert sim_a.authorize(req).outcome is Outcome.UNKNOWN
    found = sim_a.status(req.idempotency_key)
    assert found.outcome is Outcome.APPROVED and found.psp_reference.startswith("ch_")


def test_timeout_not_charged_is_unknown_then_not_found(base_url):
    req = auth(CARD["timeout_not_charged"])
    sim_a = connector(base_url)
    assert sim_a.authorize(req).outcome is Outcome.UNKNOWN
    assert sim_a.status(req.idempotency_key).outcome is Outcome.NOT_FOUND


def test_replay_with_same_key_charges_once(base_url):
    req = auth(CARD["approve"])
    first, second = (connector(base_url).authorize(req) for _ in range(2))
    assert first.outcome is second.outcome is Outcome.APPROVED
    assert first.psp_reference == second.psp_reference
    _, stats = http_json(base_url, "GET", "/psp/sim-a/stats")
    assert stats["by_reference"][req.reference] == 1


def test_concurrent_identical_authorizations_charge_once(base_url):
    req = auth(CARD["approve"])
    sim_b = connector(base_url, "sim-b", timeout_s=5)
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda _: sim_b.authorize(req), range(20)))
    assert {r.outcome for r in results} == {Outcome.APPROVED}
    assert len({r.psp_reference for r in results}) == 1
    _, stats = http_json(base_url, "GET", "/psp/sim-b/stats")
    assert stats["by_reference"][req.reference] == 1


def test_capture_and_refund_round_trip(base_url):
    sim_a = connector(base_url)
    req = auth(CARD["approve"], amount=1000)
    ref = sim_a.authorize(req).psp_reference
    assert sim_a.capture(ref, 1500, "EUR", "cap-too-much-" + ref).outcome is Outcome.DECLINED
    captured = sim_a.capture(ref, 800, "EUR", "cap-" + ref)
    assert (captured.outcome, captured.psp_reference) == (Outcome.APPROVED, ref)
    assert sim_a.capture(ref, 800, "EUR", "cap-" + ref).outcome is Outcome.APPROVED  # replay
    refund = sim_a.refund(ref, 500, "EUR", "ref1-" + ref)
    assert refund.outcome is Outcome.APPROVED and refund.psp_reference.startswith("re_")
    assert sim_a.refund(ref, 500, "EUR", "ref1-" + ref).psp_reference == refund.psp_reference
    over = sim_a.refund(ref, 301, "EUR", "ref2-" + ref)
    assert (over.outcome, over.code) == (Outcome.DECLINED, "amount_too_large")
    assert sim_a.refund(ref, 300, "EUR", "ref3-" + ref).outcome is Outcome.APPROVED
    _, charge = http_json(base_url, "GET", "/psp/sim-a/authorizations/" + req.idempotency_key)
    assert (charge["status"], charge["refunded_amount"]) == ("refunded", 800)


def test_void_round_trip(base_url):
    sim_a = connector(base_url)
    ref = sim_a.authorize(auth(CARD["approve"])).psp_reference
    voided = sim_a.void(ref, "void-" + ref)
    assert voided.outcome is Outcome.APPROVED
    assert sim_a.void(ref, "void-" + ref).outcome is Outcome.APPROVED  # replay
    assert sim_a.capture(ref, 100, "EUR", "cap-" + ref).code == "invalid_state"


def test_connection_refused_is_unavailable():
    result = connector(f"http://127.0.0.1:{free_port()}").authorize(auth(CARD["approve"]))
    assert (result.outcome, result.code) == (Outcome.UNAVAILABLE, "connect_failed")


def test_connection_dropped_after_sending_is_unknown():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def swallow_and_hang_up():
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.close()

        thread = threading.Thread(target=swallow_and_hang_up, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        result = connector(url, timeout_s=2).authorize(auth(CARD["approve"]))
        thread.join(2)
    assert (result.outcome, result.code) == (Outcome.UNKNOWN, "no_response")
    assert CARD["approve"] not in repr(result)


@pytest.mark.parametrize("status,body,outcome", [
    (503, {"code": "try_again_later", "status": "unavailable"}, Outcome.SOFT_DECLINED),
    (503, {}, Outcome.UNAVAILABLE),
    (502, b"<html>", Outcome.UNAVAILABLE),
    (429, {"code": "rate_limited"}, Outcome.UNAVAILABLE),
    (500, {"code": "internal_error"}, Outcome.UNKNOWN),
    (504, {"code": "gateway_timeout"}, Outcome.UNKNOWN),
    (200, b"not json", Outcome.UNKNOWN),
    (402, {"code": "card_declined"}, Outcome.DECLINED),
])
def test_http_answers_map_to_outcomes(status, body, outcome):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert SimulatorConnector._map("authorize", status, raw)[0] is outcome


def test_status_of_a_declined_authorization_is_declined(base_url):
    req = auth(CARD["insufficient_funds"])
    sim_a = connector(base_url)
    sim_a.authorize(req)
    found = sim_a.status(req.idempotency_key)
    assert (found.outcome, found.code) == (Outcome.DECLINED, "insufficient_funds")


def test_bad_json_and_unknown_routes_answer_json_errors(base_url):
    status, body = http_json(base_url, "POST", "/psp/sim-a/authorizations", b"{nope",
                             {"Content-Type": "application/json"})
    assert (status, body["code"]) == (400, "bad_json")
    assert http_json(base_url, "GET", "/nope")[0] == 404
    assert http_json(base_url, "GET", "/psp/sim-a/authorizations")[0] == 405


def test_correlation_id_is_recorded(base_url):
    req = auth(CARD["approve"])
    connector(base_url).authorize(req)
    _, charge = http_json(base_url, "GET", f"/psp/sim-a/authorizations/{req.idempotency_key}")
    assert charge["correlation_id"] == req.correlation_id and charge["last4"] == "4242"


def test_webhook_sink_stores_in_order_and_fail_tenants_answer_500(base_url):
    tenant = "t-" + uuid.uuid4().hex
    for i in range(3):
        status, _ = http_json(base_url, "POST", f"/webhooks/{tenant}", json.dumps({"n": i}).encode(),
                              {"Webhook-Signature": f"t=1,v1=sig{i}", "X-Correlation-Id": f"c{i}"})
        assert status == 200
    _, listed = http_json(base_url, "GET", f"/webhooks/{tenant}")
    assert [json.loads(d["body"])["n"] for d in listed["deliveries"]] == [0, 1, 2]
    assert listed["deliveries"][2]["signature"] == "t=1,v1=sig2"
    assert listed["deliveries"][2]["correlation_id"] == "c2"
    assert http_json(base_url, "POST", "/webhooks/fail-x", b"{}")[0] == 500


def test_registry_builds_connectors_and_rejects_unknown_types(base_url):
    built = build_connector({"name": "sim-b", "type": "simulator", "base_url": base_url + "/psp/sim-b",
                             "timeout_s": 1.0, "api_key": "sk_test_123"})
    assert built.authorize(auth(CARD["approve"])).outcome is Outcome.APPROVED
    assert "sk_test" not in repr(built.__dict__)
    with pytest.raises(ValueError, match="stripe"):
        build_connector({"name": "x", "type": "stripe", "base_url": base_url})


def test_secret_is_masked():
    secret = Secret("sk_live_abc")
    assert repr(secret) == "Secret('***')" and str(secret) == "***" and f"{secret}" == "***"
    assert secret.reveal() == "sk_live_abc"


def test_no_full_card_number_is_stored(sim):
    base_url, db = sim
    for number in [*TEST_CARDS, "5555555555554444", "4242424242424241"]:
        connector(base_url, "sim-b").authorize(auth(number))
    time.sleep(TIMEOUT_DELAY)  # let the delayed handlers finish their writes
    files = list(Path(db).parent.glob(Path(db).name + "*"))
    assert files
    blob = b"".join(f.read_bytes() for f in files)
    for number in [*TEST_CARDS, "5555555555554444", "4242424242424241"]:
        assert number.encode() not in blob


# -- injected network faults (--fault-lose-request / --fault-lose-response) ---------------
@pytest.fixture
def faulty(tmp_path):
    """Start simulators with injected faults; all are stopped afterwards."""
    servers = []

    def start(lose_request=0.0, lose_response=0.0, seed=7, ops=("authorize",)):
        server, thread = serve("127.0.0.1", 0, str(tmp_path / f"sim{len(servers)}.db"), TIMEOUT_DELAY,
                               lose_request=lose_request, lose_response=lose_response, fault_seed=seed,
                               fault_ops=ops, poll_interval=0.02)
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_lost_request_is_unknown_and_nothing_is_charged(faulty):
    base = faulty(lose_request=1.0)
    req = auth(CARD["approve"])
    assert connector(base).authorize(req).outcome is Outcome.UNKNOWN
    assert connector(base).status(req.idempotency_key).outcome is Outcome.NOT_FOUND
    _, stats = http_json(base, "GET", "/psp/sim-a/stats")
    assert stats["authorizations"] == 0 and req.reference not in stats["by_reference"]
    assert stats["faults"] == {"lose_request": 1, "lose_response": 0}


def test_lost_response_is_unknown_but_charged_once_and_found_by_status(faulty):
    base = faulty(lose_response=1.0)
    req = auth(CARD["approve"])
    assert connector(base).authorize(req).outcome is Outcome.UNKNOWN
    assert connector(base).authorize(req).outcome is Outcome.UNKNOWN  # the retry is lost too, but deduped
    assert connector(base).status(req.idempotency_key).outcome is Outcome.APPROVED
    _, stats = http_json(base, "GET", "/psp/sim-a/stats")
    assert stats["by_reference"][req.reference] == 1
    assert stats["faults"] == {"lose_request": 0, "lose_response": 2}
    assert stats["faults_by_op"] == {"authorize": {"lose_response": 2}}


def test_fault_rates_follow_the_seed_and_only_touch_faultable_calls(faulty):
    counts = []
    for _ in range(2):
        base = faulty(lose_request=0.2, lose_response=0.3, seed=42)
        outcomes = [connector(base).authorize(auth(CARD["approve"])).outcome for _ in range(200)]
        _, stats = http_json(base, "GET", "/psp/sim-a/stats")
        assert outcomes.count(Outcome.UNKNOWN) == sum(stats["faults"].values())
        assert stats["authorizations"] == 200 - stats["faults"]["lose_request"]
        assert http_json(base, "GET", "/health") == (200, {"status": "ok"})  # never faulted
        counts.append(stats["faults"])
    assert counts[0] == counts[1]  # same seed, same sequential calls: the same faults
    assert 20 <= counts[0]["lose_request"] <= 60 and 35 <= counts[0]["lose_response"] <= 85


def test_capture_faults_are_opt_in_and_replayed_by_key(faulty):
    base = faulty(lose_response=1.0, ops=("capture",))
    req = auth(CARD["approve"])
    ref = connector(base).authorize(req).psp_reference  # authorizations are not faulted here
    assert ref.startswith("ch_")
    assert connector(base).capture(ref, 1000, "EUR", "cap-1").outcome is Outcome.UNKNOWN
    assert connector(base).capture(ref, 1000, "EUR", "cap-1").outcome is Outcome.UNKNOWN  # same key: no-op
    assert connector(base).refund(ref, 1000, "EUR", "ref-1").outcome is Outcome.APPROVED  # so it was captured
    _, stats = http_json(base, "GET", "/psp/sim-a/stats")
    assert stats["faults_by_op"] == {"capture": {"lose_response": 2}}


def test_fault_options_are_validated():
    from laptop.psp_simulator import Faults
    with pytest.raises(ValueError):
        Faults(lose_request=0.7, lose_response=0.5)
    with pytest.raises(ValueError):
        Faults(ops=("refund",))
