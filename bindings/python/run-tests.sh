#!/usr/bin/env bash
# The Python wheel's tests, from a fresh machine: a venv at <repo>/.venv (made if missing) with
# maturin, pytest, pytest-timeout, paho-mqtt, mypy and locust (for mode.locust); the package
# built and installed from bindings/python; mode-sim built; then mypy.stubtest, mypy --strict
# on the package and examples/python, and the pytest suite (warnings are errors, every test has
# a timeout). Exits non-zero on any failure, and when pytest ran no test.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
venv=$root/.venv
py=${PYTHON:-python3.11}
command -v "$py" >/dev/null || py=python3

step() { printf '\n==> python: %s\n' "$*"; }

if [ ! -x "$venv/bin/python" ]; then
  step "creating $venv"
  "$py" -m venv "$venv"
fi
step "tools (maturin, pytest, pytest-timeout, paho-mqtt, mypy, locust)"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "maturin>=1.7,<2" pytest pytest-timeout "paho-mqtt>=2,<3" mypy \
  "locust>=2.20,<3"

step "building and installing the mode package (debug build)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
# maturin develop installs into the venv it runs from; a debug build keeps this step short.
(cd bindings/python && VIRTUAL_ENV=$venv PATH=$venv/bin:$PATH "$venv/bin/maturin" develop -q)

step "building mode-sim"
cargo build -q -p mode-sim
export MODE_SIM=$CARGO_TARGET_DIR/debug/mode-sim

step "stubs match the native module (mypy.stubtest)"
(cd /tmp && "$venv/bin/python" -m mypy.stubtest mode)

step "types (mypy --strict): the package and the Python examples"
(cd /tmp && "$venv/bin/python" -m mypy --strict -p mode)
"$venv/bin/python" -m mypy --strict examples/python/*.py

step "pytest"
cd bindings/python
set +e
"$venv/bin/python" -m pytest -p no:cacheprovider tests
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "python: pytest collected no test: that is a failure here" >&2
  exit 1
fi
exit "$status"
