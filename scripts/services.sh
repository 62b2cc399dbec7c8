#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/bench.sh: installs PostgreSQL and OpenLDAP (slapd) from
# Debian packages when missing (plus the packages named in EXTRA_PACKAGES), starts a
# throw-away PostgreSQL cluster and slapd on loopback on free ports, exports their addresses
# (FIS_TEST_POSTGRES_URL, FIS_TEST_LDAP_*), and stops them when the calling script exits.
# A service that cannot be started fails the run.

log() { printf '\n==> %s\n' "$*"; }

# --- 1. packages -----------------------------------------------------------------------------
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
missing=()
[ -n "$(pg_bin)" ] && [ -x "$(pg_bin)/initdb" ] || missing+=(postgresql)
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || missing+=(slapd)
command -v ldapwhoami >/dev/null 2>&1 || missing+=(ldap-utils)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
for package in ${EXTRA_PACKAGES:-}; do
  command -v "${package%%:*}" >/dev/null 2>&1 || missing+=("${package#*:}")
done
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
maxsize 4294967296
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

