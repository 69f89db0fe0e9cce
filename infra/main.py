"""CDK Terrain app: `python -m infra.main` writes infra/cdktf.out/ (one global stack, one per region).

`python -m infra.main --check-region R` validates a region name against infra/config.json.
"""
from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


def build(outdir: str | None = None):
    from cdktn import App

    from . import settings
    from .stacks.global_stack import GlobalStack
    from .stacks.regional_stack import RegionalStack

    cfg, tenants = settings.load_config(), settings.load_tenants()
    app = App(outdir=str(outdir or settings.OUTDIR))
    GlobalStack(app, settings.GLOBAL_STACK, cfg=cfg, tenants=tenants)
    for region in cfg["regions"]:
        RegionalStack(app, settings.regional_stack_name(region), region=region, cfg=cfg)
    return app


def main(argv: list[str]) -> int:
    from . import settings

    if argv[:1] == ["--check-region"]:
        try:
            settings.check_region(settings.load_config(), argv[1] if len(argv) > 1 else "")
        except settings.InfraConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    started = time.monotonic()
    app = build(argv[0] if argv else None)
    app.synth()
    print(f"synthesized {app.outdir} in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
