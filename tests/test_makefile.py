"""The Makefile declares as phony only targets it has a rule for."""

import re
from pathlib import Path

MAKEFILE = Path(__file__).resolve().parent.parent / "Makefile"


def test_every_phony_target_has_a_rule():
    lines = MAKEFILE.read_text(encoding="utf-8").splitlines()
    phony = {name for line in lines if line.startswith(".PHONY:") for name in line.split(":", 1)[1].split()}
    rules = {name for line in lines if (m := re.match(r"^([\w-]+(?:\s+[\w-]+)*)\s*:(?!=)", line)) for name in m[1].split()}
    assert phony, "no .PHONY line"
    assert phony <= rules, f"phony targets without a rule: {sorted(phony - rules)}"
