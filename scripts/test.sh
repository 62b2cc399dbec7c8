#!/usr/bin/env bash
# Runs the whole test suite against real services, from nothing installed but the Rust
# toolchain:
#   1. installs PostgreSQL, OpenLDAP (slapd), Chromium (and Python, Node.js) from Debian
#      packages when missing;
#   2. starts a throw-away PostgreSQL cluster and slapd on loopback, on free ports, and installs
#      Synapse and schemathesis (PyPI, pinned) and matrix-js-sdk (npm, pinned) under target/e2e
#      for the end-to-end tests and the API fuzzing;
#   3. runs `cargo fmt --check`, `cargo clippy --all-targets -- -D warnings`, and the tests,
#      once with SQLite and once with PostgreSQL as the service's database;
#   4. builds the Debian package and checks it on this machine (install, unit, start as the
#      unit does, purge: scripts/check-package.sh), then the container's runtime stage
#      (scripts/check-container.sh);
#   5. stops what it started.
# A service that cannot be started fails the run; nothing is skipped.
set -euo pipefail

cd "$(dirname "$0")/.."
# Debian packages the tests need besides the services: `command:package`.
EXTRA_PACKAGES="chromium:chromium npm:npm node:nodejs systemd-analyze:systemd setpriv:util-linux dpkg-deb:dpkg"
# shellcheck source=scripts/services.sh
source scripts/services.sh

# --- 2c. Synapse (PyPI, pinned) for the end-to-end test ------------------------------------------
SYNAPSE_VERSION=1.163.2
SYNAPSE_VENV="$PWD/target/e2e/synapse-$SYNAPSE_VERSION"
if ! "$SYNAPSE_VENV/bin/python" -c "import synapse" >/dev/null 2>&1; then
  log "installing matrix-synapse $SYNAPSE_VERSION into $SYNAPSE_VENV"
  rm -rf "$SYNAPSE_VENV"
  python3 -m venv "$SYNAPSE_VENV"
  "$SYNAPSE_VENV/bin/pip" install -q --disable-pip-version-check "matrix-synapse==$SYNAPSE_VERSION"
fi
export FIS_TEST_SYNAPSE_PYTHON="$SYNAPSE_VENV/bin/python"

# --- 2c'. schemathesis (PyPI, pinned) for the API fuzzing -------------------------------------
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV="$PWD/target/e2e/schemathesis-$SCHEMATHESIS_VERSION"
if ! "$SCHEMATHESIS_VENV/bin/schemathesis" --version >/dev/null 2>&1; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV"
  rm -rf "$SCHEMATHESIS_VENV"
  python3 -m venv "$SCHEMATHESIS_VENV"
  "$SCHEMATHESIS_VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
export FIS_TEST_SCHEMATHESIS="$SCHEMATHESIS_VENV/bin/schemathesis"

# --- 2d. matrix-js-sdk (npm, pinned by tests/js/package-lock.json) for the client test -----------
JS_SDK_DIR="$PWD/target/e2e/js-sdk"
if ! cmp -s tests/js/package-lock.json "$JS_SDK_DIR/package-lock.json" \
   || [ ! -d "$JS_SDK_DIR/node_modules/matrix-js-sdk" ]; then
  log "installing matrix-js-sdk into $JS_SDK_DIR"
  rm -rf "$JS_SDK_DIR" && mkdir -p "$JS_SDK_DIR"
  cp tests/js/package.json tests/js/package-lock.json "$JS_SDK_DIR/"
  (cd "$JS_SDK_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi
export FIS_TEST_JS_SDK_DIR="$JS_SDK_DIR"

# --- 3. checks and tests ---------------------------------------------------------------------
# With arguments, run only `cargo test <arguments>` against these services (for development).
if [ $# -gt 0 ]; then
  log "cargo test $*"
  cargo test "$@"
  exit
fi
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
log "tests on SQLite"
FIS_TEST_BACKEND=sqlite cargo test --locked --all-targets
log "tests on PostgreSQL"
FIS_TEST_BACKEND=postgres cargo test --locked --all-targets
log "all tests passed on SQLite and PostgreSQL"
# After the tests: an installed package puts a configuration at /etc/twake.
log "Debian package (release build, install, unit, start, purge)"
scripts/check-package.sh
log "container runtime stage"
scripts/check-container.sh
