#!/usr/bin/env bash
# Runs the whole test suite against real services, from nothing installed but the Rust
# toolchain:
#   1. installs PostgreSQL, OpenLDAP (slapd), Chromium (and Python, Node.js) from Debian
#      packages when missing;
#   2. starts a throw-away PostgreSQL cluster and slapd on loopback, on free ports, and installs
#      Synapse (PyPI, pinned) and matrix-js-sdk (npm, pinned) under target/e2e for the
#      end-to-end tests;
#   3. runs `cargo fmt --check`, `cargo clippy --all-targets -- -D warnings`, and the tests,
#      once with SQLite and once with PostgreSQL as the service's database;
#   4. stops what it started.
# A service that cannot be started fails the run; nothing is skipped.
set -euo pipefail

cd "$(dirname "$0")/.."
log() { printf '\n==> %s\n' "$*"; }

# --- 1. packages -----------------------------------------------------------------------------
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
missing=()
[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || missing+=(postgresql)
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || missing+=(slapd)
command -v ldapwhoami >/dev/null 2>&1 || missing+=(ldap-utils)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then echo "need root to install ${missing[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # The packages' own services are not needed: keep them from starting.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  rm -f /usr/sbin/policy-rc.d
fi
PG_BIN="$(pg_bin)"
SLAPD="$(command -v slapd || echo /usr/sbin/slapd)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WORK="$(mktemp -d /tmp/fis-test.XXXXXX)"
chmod 755 "$WORK"
PG_DIR="$WORK/pg"
SLAPD_PID=""
cleanup() {
  set +e
  if [ -n "$SLAPD_PID" ]; then kill "$SLAPD_PID" 2>/dev/null; fi
  if [ -f "$PG_DIR/data/postmaster.pid" ]; then as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# PostgreSQL refuses to run as root: run it as `postgres` when we are root.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# --- 2a. PostgreSQL --------------------------------------------------------------------------
log "starting PostgreSQL"
PG_PORT="$(free_port)"
mkdir -p "$PG_DIR"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$PG_DIR"; fi
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres --no-sync >"$WORK/initdb.log" 2>&1 \
  || { cat "$WORK/initdb.log"; exit 1; }
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off -c max_connections=500" start >/dev/null \
  || { cat "$PG_DIR/server.log"; exit 1; }
export FIS_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
echo "PostgreSQL on 127.0.0.1:$PG_PORT"

# --- 2b. OpenLDAP ----------------------------------------------------------------------------
log "starting slapd"
LDAP_PORT="$(free_port)"
LDAP_DIR="$WORK/ldap"
mkdir -p "$LDAP_DIR/db"
LDAP_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
cat > "$LDAP_DIR/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile $LDAP_DIR/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 104857600
suffix "dc=example,dc=org"
rootdn "cn=admin,dc=example,dc=org"
rootpw $LDAP_PASSWORD
directory $LDAP_DIR/db
index objectClass eq
index uid eq
CONF
"$SLAPD" -f "$LDAP_DIR/slapd.conf" -h "ldap://127.0.0.1:$LDAP_PORT/" -d 0 >"$LDAP_DIR/slapd.log" 2>&1 &
SLAPD_PID=$!
export FIS_TEST_LDAP_URL="ldap://127.0.0.1:$LDAP_PORT"
export FIS_TEST_LDAP_BASE="dc=example,dc=org"
export FIS_TEST_LDAP_ADMIN_DN="cn=admin,dc=example,dc=org"
export FIS_TEST_LDAP_ADMIN_PASSWORD="$LDAP_PASSWORD"
for _ in $(seq 1 100); do
  ldapwhoami -x -H "$FIS_TEST_LDAP_URL" -D "$FIS_TEST_LDAP_ADMIN_DN" -w "$LDAP_PASSWORD" >/dev/null 2>&1 && break
  kill -0 "$SLAPD_PID" 2>/dev/null || { cat "$LDAP_DIR/slapd.log"; echo "slapd exited" >&2; exit 1; }
  sleep 0.1
done
ldapwhoami -x -H "$FIS_TEST_LDAP_URL" -D "$FIS_TEST_LDAP_ADMIN_DN" -w "$LDAP_PASSWORD" >/dev/null \
  || { cat "$LDAP_DIR/slapd.log"; echo "slapd does not answer" >&2; exit 1; }
ldapadd -x -H "$FIS_TEST_LDAP_URL" -D "$FIS_TEST_LDAP_ADMIN_DN" -w "$LDAP_PASSWORD" >/dev/null <<LDIF
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example
LDIF
echo "slapd on 127.0.0.1:$LDAP_PORT"

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
