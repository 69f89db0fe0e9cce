"""The real local stack (`python -m laptop.stack`, what `make local` runs) as processes."""
from __future__ import annotations

import pytest

from ..runs import new_run
from ..stack import LocalStack, start_local, stop_local

__all__ = ["LocalStack", "local_stack"]


@pytest.fixture(scope="module")
def local_stack(runs_root, request):
    """Its data dir (SQLite files, logs, output) stays under the session's runs root for the PAN scan."""
    try:
        stack = start_local(new_run(runs_root, "e2e", request.module.__name__))
    except RuntimeError as e:
        pytest.fail(str(e))
    yield stack
    stop_local(stack)
