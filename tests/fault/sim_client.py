"""The simulator's API client: the merchant side of the simulation.

Creates payments under idempotency keys, retries requests that crashed or met
409 in flight, repeats calls with the same key and body (the first 202 must be
replayed byte for byte) and with a different body (409), and captures,
cancels and refunds as a merchant would. What the API answered is kept for
sim_checks: one key, one payment; every stored payment answered under a key.
"""
from __future__ import annotations

import orjson

from chalicelib.services.api_io import ApiError

CARDS = ("4242424242424242", "5555555555554444", "4000056655665556", "378282246310005")


class ApiClient:
    """Mixed into Simulation, which provides rng, service, raw_store, tenant_id, stats and these fields:
    keys (key -> body sent), first_reply, answers (key -> payment ids), unanswered, api_violations."""

    def _post(self, key: str, body: bytes, expect: str) -> None:
        try:
            reply = self.service.create_payment(self.tenant_id, key, body, f"corr-{key}")
        except ApiError as e:
            if e.status == 409 and e.title == "Request in progress" and expect != "conflict":
                return self.unanswered.append(key)
            if not (expect == "conflict" and e.status == 409 and e.title == "Idempotency key reused"):
                self.api_violations.append(f"API key {key} ({expect}): {e.status} {e.title}: {e.detail}")
            return None
        if expect == "conflict":
            return self.api_violations.append(f"API key {key}: a different body was answered {reply.status}")
        pid = orjson.loads(reply.body)["id"]
        self.answers.setdefault(key, set()).add(pid)
        first = self.first_reply.setdefault(key, reply.body)
        if first != reply.body:
            self.api_violations.append(f"API key {key}: replay differs from the first response")
        if key in self.unanswered:
            self.unanswered.remove(key)

    def do_create(self) -> None:
        if len(self.keys) >= self.n_payments:
            return self.do_api_retry()
        r, key = self.rng, f"key-{len(self.keys)}"
        body = {"amount": r.choice((500, 1999, 25_000, 25_000, 1_200_000)), "currency": r.choice(("EUR", "USD", "GBP")),
                "payment_method": {"type": "card", "card": {"number": r.choice(CARDS), "exp_month": 12,
                                                            "exp_year": 2030, "cvc": "123"}},
                "capture": r.choice(("automatic", "automatic", "manual")), "reference": f"order-{key}",
                "customer": {"id": f"c{r.randint(1, 3)}", "country": r.choice(("DE",) * 5 + ("FR",) * 4 + ("KP",))}}
        self.keys[key] = orjson.dumps(body)
        self.unanswered.append(key)
        self._post(key, self.keys[key], "create")

    def do_api_retry(self) -> None:
        if self.unanswered:
            key = self.rng.choice(self.unanswered)
            self._post(key, self.keys[key], "retry")

    def do_api_duplicate(self) -> None:
        if self.answers:
            key = self.rng.choice(sorted(self.answers))
            self.stats["api_duplicates"] += 1
            self._post(key, self.keys[key], "duplicate")

    def do_api_conflict(self) -> None:
        if self.answers:
            key = self.rng.choice(sorted(self.answers))
            body = orjson.loads(self.keys[key]) | {"amount": 777}
            self.stats["api_conflicts"] += 1
            self._post(key, orjson.dumps(body), "conflict")

    def do_merchant(self) -> None:
        """Capture, cancel or refund a payment, as a merchant would (409/422 answers are fine)."""
        if not self.answers:
            return
        r = self.rng
        pid = next(iter(self.answers[r.choice(sorted(self.answers))]))
        p = self.raw_store.payments.get_payment(self.tenant_id, pid)
        args = (self.tenant_id, pid)
        try:
            if p.status == "requires_capture" and r.random() < 0.6:
                self.service.capture(*args, orjson.dumps({"amount": r.randint(1, p.amount)}), "corr-m")
            elif p.status in ("settled", "partially_refunded") and p.refundable_amount > 0:
                self.service.refund(*args, orjson.dumps({"amount": r.randint(1, p.refundable_amount)}), "corr-m")
            elif p.status == "requires_capture" or r.random() < 0.1:  # early cancels race the pipeline
                self.service.cancel(*args, b"{}", "corr-m")
            else:
                return
            self.stats["merchant_calls"] += 1
        except ApiError:
            self.stats["merchant_refused"] += 1

