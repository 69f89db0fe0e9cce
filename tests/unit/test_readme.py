"""README.md tells the truth: commands, state diagram, test cards, configuration."""
from __future__ import annotations

import re
from pathlib import Path

from chalicelib import config
from laptop.psp_simulator import TEST_CARDS
from chalicelib.domain.states import mermaid

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_two_setup_commands_come_first():
    first_block = re.search(r"```sh\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make local", "make test"]


def test_state_diagram_is_generated_from_the_transition_table():
    block = re.search(r"```mermaid\n(.*?)\n```", README, re.S).group(1)
    assert block == mermaid()


def test_every_simulator_test_card_is_documented_with_its_behaviour():
    for number, (behaviour, _) in TEST_CARDS.items():
        assert re.search(rf"\| `{number}` \| {behaviour} \|", README), number


def test_every_environment_variable_is_documented_with_its_default():
    for name, default in config.DEFAULTS.items():
        shown = default or ("(none)" if name in config.EMPTY_MEANS_NONE else "(derived)")
        assert f"| `{name}` | `{shown}` |" in README, name
