"""Print a pip constraints file pinning every dependency floor of pyproject.toml (core and extras) at its floor.

CI installs the package against it and runs a fast subset of the tests, so that each floor is one that works.
torch and torchvision keep the build already installed: PyPI has only multi-GB CUDA builds of old torch
releases for Linux, so their floors are not tried here (docs/results/newcomer.md says so).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

KEPT_AS_INSTALLED = {"torch", "torchvision"}
FLOOR = re.compile(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)")


def floors(pyproject: Path) -> dict[str, str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    pins = {}
    for requirement in requirements:
        match = FLOOR.match(requirement)
        if match and match.group(1).lower() not in KEPT_AS_INSTALLED:
            pins[match.group(1).lower()] = match.group(2)
    return pins


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    pins = floors(root / "pyproject.toml")
    sys.stdout.write("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
