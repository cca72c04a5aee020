"""The layering of docs/ARCHITECTURE.md's code map, checked by import-linter's contracts in
pyproject.toml: every import points down (golden at the bottom; pyioso and hw on it and apart;
sim above them; bench on top), pyioso's sub-packages are layered, and no package's modules
import each other in a loop."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout
