"""schemathesis against the running local stack's /openapi.json: >= 1,000 generated requests,
no response >= 500, and every response conforming to the document (status code, content type,
headers, body schema)."""
from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,  # noqa: E402
                                               response_schema_conformance, status_code_conformance)

pytestmark = pytest.mark.e2e
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
PER_OPERATION = 150
MIN_CASES = 1000


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory):
    from ..stack import start_local, stop_local
    # The limit itself has its own test; here it would only turn the run into 429s.
    stack = start_local(tmp_path_factory.mktemp("fuzz"), RATE_LIMIT_PER_S="100000", RATE_LIMIT_BURST="100000")
    yield stack
    stop_local(stack)


def test_schemathesis_finds_no_5xx_and_no_nonconforming_response(fuzz_stack):
    import requests
    schema = schemathesis.openapi.from_url(fuzz_stack.base + "/openapi.json")
    session = requests.Session()
    auth = {"Authorization": f"Bearer {fuzz_stack.api_key}"}
    counts: dict[str, int] = {}
    statuses: dict[int, int] = {}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        name = f"{operation.method.upper()} {operation.path}"

        @settings(max_examples=PER_OPERATION, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case):
            counts[name] = counts.get(name, 0) + 1
            # Our key on every request (the 401 path has its own tests): the fuzz reaches the handlers.
            headers = {**{k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}, **auth}
            try:
                response = case.call_and_validate(base_url=fuzz_stack.base, session=session, headers=headers,
                                                  checks=CHECKS)
            except Exception as e:  # noqa: BLE001 - collect, report all at the end
                failures.append(f"{name}: {type(e).__name__}: {str(e)[:400]}")
                return
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        run()
    total = sum(counts.values())
    print(f"\nschemathesis: {total} cases over {len(counts)} operations; statuses {dict(sorted(statuses.items()))}; "
          f"{len(failures)} failures")
    print(counts)
    assert total >= MIN_CASES, counts
    assert not failures, "\n".join(failures[:15])
    assert not [s for s in statuses if s >= 500]


def test_schemathesis_every_phase_and_check_with_links(fuzz_stack):
    """The schemathesis CLI as an outside reviewer runs it: examples, coverage, fuzzing and stateful
    phases (the stateful one follows the links declared on POST /v1/payments to get, capture, cancel
    and refund), every check, a fixed seed. Expected answers by design are in tests/schemathesis.toml."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    cli = Path(sys.executable).parent / "schemathesis"
    out = subprocess.run(
        [str(cli), "--config-file", str(root / "tests" / "schemathesis.toml"), "run",
         fuzz_stack.base + "/openapi.json", "--phases", "examples,coverage,fuzzing,stateful", "--checks", "all",
         "-H", f"Authorization: Bearer {fuzz_stack.api_key}", "--max-examples", "30", "--seed", "1"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "NO_COLOR": "1"})
    summary = out.stdout[-6000:]
    assert out.returncode == 0, summary
    generated = re.search(r"(\d+) generated, (\d+) passed", out.stdout)
    assert generated and generated.group(1) == generated.group(2), summary
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ {phase}\b", out.stdout), (phase, summary)
    print(f"\nschemathesis (all phases, every check): {generated.group(1)} cases, 0 failures")
