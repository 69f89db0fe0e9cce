"""Where a running local stack is: `make local` / `make local-aws` write $DATA_DIR/stack.json while
they run (mode, endpoints, ports), so payctl beside them reads the same store and bus without any
environment of its own. What the caller set explicitly wins; a file whose process is gone is ignored."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from chalicelib import config as C

STACK_FILE = "stack.json"
# What a stack pins for its clients: the mode, where the aws-local services listen, its ports.
STACK_VARS = (C.PLATFORM_MODE, C.AWS_ENDPOINT_URL, C.KAFKA_BOOTSTRAP_SERVERS, C.PAYMENTS_TABLE, C.KMS_KEY_ID,
              C.PORT, C.SIMULATOR_PORT, C.DASHBOARD_PORT)


def write(data_dir: Path, env: dict[str, str], pid: int) -> Path:
    """Record the running stack (called once it is ready)."""
    path = data_dir / STACK_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": pid, "env": {k: env[k] for k in STACK_VARS if env.get(k)}}, indent=2))
    tmp.replace(path)  # readers never see half a file
    return path


def remove(data_dir: Path, pid: int) -> None:
    path = data_dir / STACK_FILE
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass


def running(data_dir: Path) -> dict[str, Any] | None:
    """The stack recorded in `data_dir`, if its process still runs."""
    try:
        doc = json.loads((data_dir / STACK_FILE).read_text())
        os.kill(int(doc["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return doc


def environment(env: dict[str, str]) -> dict[str, str]:
    """`env` with the running stack's settings filled in where the caller set nothing."""
    stack = running(Path(env.get(C.DATA_DIR) or C.DEFAULTS[C.DATA_DIR]).resolve())
    return {**stack["env"], **{k: v for k, v in env.items() if v}} if stack else env
