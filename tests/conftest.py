"""Shared pytest setup: make the `chalicelib` package importable from chalice_app/."""
import sys
from pathlib import Path

_APP = str(Path(__file__).resolve().parents[1] / "chalice_app")
if _APP not in sys.path:
    sys.path.insert(0, _APP)

import pytest  # noqa: E402 - after the path setup above


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory):
    """Where the e2e stack, the crash test and the demo keep their data dirs and logs (tests/runs.py)."""
    from tests.runs import session_root
    return session_root(tmp_path_factory.getbasetemp())
