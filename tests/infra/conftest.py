"""Synthesize the infra once per session (a subprocess, ~10-20 s) and hand tests the JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


class Synth:
    def __init__(self, outdir: Path) -> None:
        self.outdir = outdir
        self.stacks = {p.parent.name: json.loads(p.read_text()) for p in (outdir / "stacks").glob("*/cdk.tf.json")}

    def resources(self, stack: str, rtype: str) -> dict[str, dict]:
        return self.stacks[stack].get("resource", {}).get(rtype, {})

    def data(self, stack: str, dtype: str) -> dict[str, dict]:
        return self.stacks[stack].get("data", {}).get(dtype, {})

    def one(self, stack: str, rtype: str) -> tuple[str, dict]:
        found = self.resources(stack, rtype)
        assert len(found) == 1, f"{stack}: expected one {rtype}, found {sorted(found)}"
        return next(iter(found.items()))


def ref(rtype: str, logical: str, attr: str, data: bool = False) -> str:
    return "${" + ("data." if data else "") + f"{rtype}.{logical}.{attr}" + "}"


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Synth:
    out = tmp_path_factory.mktemp("cdktf") / "cdktf.out"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "chalice_app"), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    env.pop("INFRA_REPLICATION", None)
    result = subprocess.run([sys.executable, "-m", "infra.main", str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "synthesized" in result.stdout
    return Synth(out)


@pytest.fixture(scope="session")
def cfg():
    from infra import settings
    return settings.load_config()


@pytest.fixture(scope="session")
def tenants():
    from infra import settings
    return settings.load_tenants()
