#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image (Ubuntu): it installs the
# pinned CPU environment of requirements.txt into $AUTOGRADER_ROOT/venv, and bubblewrap (the
# grading worker's sandbox). Safe to run again: every step skips or repeats what is already done.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
VENV="$ROOT/venv"
export DEBIAN_FRONTEND=noninteractive

# 1. bubblewrap, and a Python >= 3.11 (Ubuntu 22.04 ships 3.10: then its python3.11 package)
PYTHON=""
for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        PYTHON="$candidate"
        break
    fi
done
apt-get update
apt-get install -y --no-install-recommends bubblewrap "${PYTHON:-python3.11}-venv"
PYTHON="${PYTHON:-python3.11}"

# 2. the venv, then torch's CPU wheel (the PyPI wheel pulls in CUDA), then every pin
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
TORCH_PIN="$(grep -E '^torch==' "$SOURCE/requirements.txt")"
"$VENV/bin/python" -m pip install --disable-pip-version-check --index-url https://download.pytorch.org/whl/cpu "$TORCH_PIN"
"$VENV/bin/python" -m pip install --disable-pip-version-check -r "$SOURCE/requirements.txt"

# 3. the worker gives up root for `nobody`, which must read the interpreter and the suites' files
chmod -R a+rX "$VENV" "$SOURCE"
echo "setup.sh: $("$VENV/bin/python" -V) in $VENV, bubblewrap installed"
