"""Fault suites: crashes, duplicate storms, PSP faults and the seeded simulation."""
import sys
from pathlib import Path

_APP = str(Path(__file__).resolve().parents[2] / "chalice_app")
if _APP not in sys.path:  # `python -m tests.fault.simulation` runs without the pytest conftest
    sys.path.insert(0, _APP)
