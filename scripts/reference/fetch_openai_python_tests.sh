#!/usr/bin/env bash
# Fetches openai-python's own tests for the SDK version the e2e suite pins
# (the `openai==X` line of tests/e2e/requirements.txt) and prints the folder
# they were unpacked into: target/reference/openai-python-X/, which holds
# tests/ (conftest.py, utils.py, api_resources/…) and the sdist's
# pyproject.toml (its pytest settings).
#
# Source: the package's sdist, got with
#   python -m pip download --no-deps --no-binary :all: openai==X
# Nothing of it is committed; target/ is ignored. Run again, it does nothing
# once the folder is complete. crates/cli/tests/openai_api_resources.rs runs
# it (with the e2e venv's python) before running those tests against
# `parlance serve`.
#
# Usage: fetch_openai_python_tests.sh   (PYTHON: the interpreter whose pip
#        downloads; default python3)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON=${PYTHON:-python3}

VERSION=$(sed -n 's/^openai\(\[[^]]*\]\)\?==\([^[:space:];#]*\).*$/\2/p' "$ROOT/tests/e2e/requirements.txt" | head -n1)
if [[ -z "$VERSION" ]]; then
    echo "no 'openai==VERSION' line in tests/e2e/requirements.txt" >&2
    exit 1
fi

DEST="$ROOT/target/reference/openai-python-$VERSION"
# What the run needs; the folder counts as complete only with all of them.
NEEDED=(
    pyproject.toml
    tests/__init__.py
    tests/conftest.py
    tests/utils.py
    tests/respx2/plugin.py
    tests/api_resources/__init__.py
    tests/api_resources/chat/__init__.py
    tests/api_resources/chat/test_completions.py
    tests/api_resources/test_completions.py
    tests/api_resources/test_models.py
)

complete() {
    local f
    for f in "${NEEDED[@]}"; do
        [[ -f "$1/$f" ]] || return 1
    done
}

if complete "$DEST"; then
    echo "$DEST"
    exit 0
fi

mkdir -p "$ROOT/target/reference"
WORK=$(mktemp -d "$ROOT/target/reference/.fetch-openai-python-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

echo "fetching the openai==$VERSION sdist (its tests/) into $DEST" >&2
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps \
    --no-binary :all: "openai==$VERSION" -d "$WORK/dl" >&2

SDIST=$(find "$WORK/dl" -maxdepth 1 -name "openai-$VERSION.tar.gz" | head -n1)
if [[ -z "$SDIST" ]]; then
    echo "pip left no openai-$VERSION.tar.gz in $WORK/dl:" >&2
    ls -l "$WORK/dl" >&2 || true
    exit 1
fi

mkdir "$WORK/src"
tar -xzf "$SDIST" -C "$WORK/src"
UNPACKED="$WORK/src/openai-$VERSION"
if ! complete "$UNPACKED"; then
    echo "the openai-$VERSION sdist lacks what the run needs; missing:" >&2
    for f in "${NEEDED[@]}"; do
        [[ -f "$UNPACKED/$f" ]] || echo "  $f" >&2
    done
    exit 1
fi

# Swap in whole, so an interrupted fetch never leaves a half folder behind.
rm -rf "$DEST"
mv "$UNPACKED" "$DEST"
echo "$DEST"
