"""Print `name==floor` for the dependencies whose floors CI tests, read from pyproject.toml (one source).

pip install $(python .ci/floors.py)
"""

import re
import sys
from pathlib import Path

import tomllib

TESTED = ("torch", "transformers", "sentence-transformers", "accelerate", "datasets", "huggingface_hub")

project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
pins = {}
for requirement in project["dependencies"]:
    match = re.match(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", requirement)
    if match and match.group(1) in TESTED:
        pins[match.group(1)] = match.group(2)
missing = sorted(set(TESTED) - set(pins))
if missing:
    sys.exit(f"pyproject.toml declares no '>=' floor for {missing}")
print(" ".join(f"{name}=={version}" for name, version in pins.items()))
