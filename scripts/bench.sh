#!/usr/bin/env bash
# Runs the benchmarks (bench/run.py): builds the release binary, installs the load generator
# `oha` (crates.io, pinned) under target/bench-tools, starts PostgreSQL and slapd on loopback as
# the tests do, and runs every scenario on SQLite and PostgreSQL. Arguments go to bench/run.py
# (e.g. `scripts/bench.sh --engines sqlite --scenarios lookup --seconds 10`).
# Results: printed, and saved under bench/results/. See BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/services.sh
source scripts/services.sh

log "building the release binary"
cargo build --release --locked
OHA_VERSION=1.16.0
export OHA="$PWD/target/bench-tools/bin/oha"
if ! "$OHA" --version 2>/dev/null | grep -q "$OHA_VERSION"; then
  log "installing oha $OHA_VERSION"
  cargo install oha --locked --version "$OHA_VERSION" --root "$PWD/target/bench-tools"
fi
log "benchmarks"
python3 bench/run.py "$@"
# The scale scenario's figures as pictures (docs/bench/, embedded by BENCHMARKS.md).
newest=$(ls -t bench/results/*.json | head -1)
if grep -q '"scale"' "$newest"; then
  if ! target/bench-tools/venv/bin/python -c "import matplotlib" 2>/dev/null; then
    log "installing matplotlib for the plots"
    python3 -m venv target/bench-tools/venv
    target/bench-tools/venv/bin/pip install -q "matplotlib==3.10.*"
  fi
  target/bench-tools/venv/bin/python bench/plot.py docs/bench "$newest"
  log "plots written to docs/bench/"
fi
