"""The real local stack (`python -m chalicelib.runtime.local`, what `make local` runs) as processes."""
from __future__ import annotations

import pytest

from ..stack import LocalStack, start_local, stop_local

__all__ = ["LocalStack", "local_stack"]


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory):
    try:
        stack = start_local(tmp_path_factory.mktemp("local-stack"))
    except RuntimeError as e:
        pytest.fail(str(e))
    yield stack
    stop_local(stack)
