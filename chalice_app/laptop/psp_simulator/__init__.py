"""The PSP simulator `make local` runs: psp.py (the fake PSPs), server.py (their HTTP routes)."""
from .psp import TEST_CARDS, Faults, Simulator, luhn_valid
from .server import SimulatorServer, main, serve

__all__ = ["TEST_CARDS", "Faults", "Simulator", "SimulatorServer", "luhn_valid", "main", "serve"]
