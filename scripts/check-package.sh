#!/usr/bin/env bash
# Builds the Debian package and checks it on this machine (as root): installs it with dpkg -i,
# checks the files, the system user and the unit (systemd-analyze verify), starts the installed
# binary exactly as the unit's ExecStart does (as the service user, in its state directory),
# waits until it is ready, stops it, and purges the package again. Run by scripts/test.sh after
# the tests (an installed package puts a configuration at /etc/twake, which the tests must not
# see).
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=federated-identity-service
UNIT="/lib/systemd/system/$NAME.service"
STATE="/var/lib/$NAME"
fail() { echo "package check: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "needs root (dpkg -i)"
if dpkg -s "$NAME" >/dev/null 2>&1; then fail "$NAME is installed on this machine already: not touching it"; fi
for tool in dpkg-deb systemd-analyze setpriv useradd; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is missing (scripts/test.sh installs it)"
done

DEB="$(scripts/package-deb.sh | tail -n 1)"
SIZE_MB=$(( $(stat -c %s "target/release/$NAME") / 1024 / 1024 ))
echo "package: $DEB ($(( $(stat -c %s "$DEB") / 1024 )) KiB; binary ${SIZE_MB} MiB)"
[ "$SIZE_MB" -le 25 ] || fail "the binary is ${SIZE_MB} MiB, more than 25"

SERVICE_PID=""
cleanup() {
  if [ -n "$SERVICE_PID" ]; then kill "$SERVICE_PID" 2>/dev/null || true; fi
  dpkg --purge "$NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

dpkg -i "$DEB" >/dev/null
getent passwd "$NAME" >/dev/null || fail "no system user $NAME"
[ "$(stat -c '%U:%G %a' "/etc/twake/$NAME.conf")" = "root:$NAME 640" ] || fail "configuration owner or mode"
"/usr/bin/$NAME" --config "/etc/twake/$NAME.conf" check-config >/dev/null || fail "the packaged configuration"
systemd-analyze verify "$UNIT" || fail "systemd-analyze verify $UNIT"
for setting in NoNewPrivileges=yes ProtectSystem=strict "StateDirectory=$NAME" "User=$NAME" CapabilityBoundingSet=; do
  grep -qx "$setting" "$UNIT" || fail "the unit lacks $setting"
done

# What systemd does before ExecStart: the state directory, owned by the user, as working
# directory; then the command line of ExecStart, as the user, without new privileges.
EXEC_START="$(sed -n 's/^ExecStart=//p' "$UNIT")"
install -d -o "$NAME" -g "$NAME" -m 0750 "$STATE"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
# shellcheck disable=SC2086 # ExecStart is a command line
(cd "$STATE" && exec env -i PATH=/usr/bin:/bin LISTEN_PORT="$PORT" \
  setpriv --reuid="$NAME" --regid="$NAME" --init-groups --no-new-privs $EXEC_START) > "target/debian/service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 1 100); do
  if "/usr/bin/$NAME" healthcheck --url "http://127.0.0.1:$PORT" --timeout 1 2>/dev/null; then break; fi
  kill -0 "$SERVICE_PID" 2>/dev/null || { cat target/debian/service.log >&2; fail "the installed service stopped"; }
  sleep 0.1
done
"/usr/bin/$NAME" healthcheck --url "http://127.0.0.1:$PORT" || { cat target/debian/service.log >&2; fail "not ready"; }
[ "$(stat -c %U "$STATE/$NAME.db")" = "$NAME" ] || fail "the database is not the service user's"
kill "$SERVICE_PID"; wait "$SERVICE_PID" || true; SERVICE_PID=""

dpkg --purge "$NAME" >/dev/null
[ ! -e "/usr/bin/$NAME" ] && [ ! -e "$UNIT" ] && [ ! -e "$STATE" ] || fail "files left after purge"
! getent passwd "$NAME" >/dev/null || fail "the system user is left after purge"
echo "package check passed"
