"""Lambda code artifacts referenced by path, so synth works before they are built.

The path is relative to the synthesized stack directory (infra/cdktf.out/stacks/<stack>),
where terraform runs. When the zip exists its hash goes in; when it does not, a
placeholder does, and `make deploy-region` builds the zip before it synthesizes.
"""
from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from .. import settings

PLACEHOLDER_HASH = "missing-build-artifact-run-make-package"


def tf_path(artifact: Path) -> str:
    stack_dir = settings.OUTDIR / "stacks" / "x"
    return "${path.module}/" + os.path.relpath(artifact, stack_dir)


def source_hash(artifact: Path) -> str:
    if not artifact.exists():
        return PLACEHOLDER_HASH
    return base64.b64encode(hashlib.sha256(artifact.read_bytes()).digest()).decode()
