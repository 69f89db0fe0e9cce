"""checkov over every synthesized stack, the Makefile's terraform guard, the topic admin's plan."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.conftest import ROOT

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


def checkov_skips() -> dict[str, str]:
    text = (ROOT / "infra" / ".checkov.yaml").read_text()
    return dict(re.findall(r"^\s*-\s*(CKV2?_AWS_\d+)\s*#\s*(.+)$", text, re.M))


def test_every_checkov_skip_has_a_justification():
    skips = checkov_skips()
    body = (ROOT / "infra" / ".checkov.yaml").read_text()
    listed = re.findall(r"^\s*-\s*(CKV\w+)", body, re.M)
    assert listed and sorted(listed) == sorted(skips), "a skipped check without a '# reason' comment"
    assert all(len(reason.split()) >= 4 for reason in skips.values())


def test_checkov_passes_on_every_stack(synth):
    # checkov's pins conflict with requirements.txt, so it has its own venv (Makefile rule).
    subprocess.run(["make", "-s", ".venv-checkov/.installed"], cwd=ROOT, check=True, timeout=900)
    stacks = sorted(p for p in (synth.outdir / "stacks").iterdir() if p.is_dir())
    result = subprocess.run([str(CHECKOV), "--config-file", str(ROOT / "infra" / ".checkov.yaml"),
                             "-d", str(synth.outdir / "stacks"), "-o", "json"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT / "infra")
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    summary = reports[0]["summary"]
    failed = [(f["check_id"], f["resource"], f["file_path"]) for r in reports for f in r["results"]["failed_checks"]]
    files = {Path(f["file_path"]).parent.name for r in reports for f in r["results"]["passed_checks"]}
    print(f"\ncheckov: passed={summary['passed']} failed={summary['failed']} skipped={summary['skipped']} "
          f"(+{len(checkov_skips())} check ids skipped in infra/.checkov.yaml)")
    assert files == {p.name for p in stacks}, "checkov did not scan every stack"
    assert failed == [] and summary["failed"] == 0 and summary["parsing_errors"] == 0
    assert summary["passed"] > 300
    # The README states these figures; a stale statement fails here (it said 651 while 721 passed).
    readme = (ROOT / "README.md").read_text()
    stated = re.search(r"checkov [\d.]+ over the three stacks: ([\d,]+) passed,\s+(\d+) failed, (\d+) check ids skipped",
                       readme)
    assert stated, "README no longer states the checkov figures"
    assert (int(stated[1].replace(",", "")), int(stated[2]), int(stated[3])) == (
        summary["passed"], summary["failed"], len(checkov_skips())), stated[0]


def _make(*args: str, path: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def _path_without_terraform(tmp_path: Path) -> str:
    """A PATH with make, the shell and python, but no terraform (it may exist on a dev box)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("make", "bash", "sh", "env", "python3", "python3.11", "dirname", "cat", "rm", "mkdir", "touch"):
        for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin", "/bin"]:
            if (Path(d) / tool).exists():
                (bindir / tool).symlink_to(Path(d) / tool)
                break
    return str(bindir)


def test_plan_without_terraform_exits_nonzero_with_one_clear_line(tmp_path):
    result = _make("plan", "REGION=us-east-1", path=_path_without_terraform(tmp_path))
    assert result.returncode != 0
    # make's own "make: ***" (or "make[1]: ***" when the tests run under `make test`) is not ours
    ours = [line for line in result.stderr.splitlines() if not re.match(r"make(\[\d+\])?: ", line)]
    assert len(ours) == 1 and "terraform" in ours[0].lower() and "install" in ours[0].lower(), result.stderr
    assert "synthesized" not in result.stdout  # checked before spending time on synth


def test_deploy_without_terraform_is_refused_the_same_way(tmp_path):
    result = _make("deploy-region", "REGION=eu-west-1", path=_path_without_terraform(tmp_path))
    assert result.returncode != 0 and "install Terraform" in result.stderr


def test_unknown_region_lists_the_configured_ones(tmp_path):
    result = _make("plan", "REGION=mars-1", path=os.environ["PATH"])
    assert result.returncode != 0
    assert "mars-1" in result.stderr and "us-east-1" in result.stderr and "eu-west-1" in result.stderr


def test_topic_admin_plan_creates_grows_and_configures():
    sys.path.insert(0, str(ROOT / "infra" / "lambda_src" / "topic_admin"))
    try:
        from handler import plan
    finally:
        sys.path.pop(0)
    wanted = [{"name": "a", "partitions": 6, "config": {"retention.ms": "1"}},
              {"name": "b", "partitions": 3}, {"name": "c", "partitions": 12}]
    todo = plan(wanted, {"b": 6, "c": 4})
    assert [t["name"] for t in todo["create"]] == ["a"]
    assert todo["grow"] == [("c", 12)]  # b has more partitions than wanted: never shrunk
    assert todo["configure"] == [("a", {"retention.ms": "1"})]


@pytest.mark.skipif(shutil.which("terraform") is None, reason="needs a terraform binary")
def test_plan_where_providers_cannot_be_downloaded_says_so_in_one_line(tmp_path):
    """terraform is there but cannot get its providers (an empty provider mirror stands in for a
    machine without network, so the test means the same everywhere)."""
    (tmp_path / "mirror").mkdir()
    rc = tmp_path / "terraformrc"
    rc.write_text('provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n' % (tmp_path / "mirror"))
    env = {**os.environ, "TF_CLI_CONFIG_FILE": str(rc)}
    result = subprocess.run(["make", "--no-print-directory", "plan", "REGION=us-east-1"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if not re.match(r"make(\[\d+\])?: ", line)]
    assert len(ours) == 1 and "cannot download" in ours[0] and "terraform" in ours[0], result.stderr
    assert "Error:" not in result.stderr and "╷" not in result.stderr  # not terraform's raw output
