#!/usr/bin/env bash
# Checks the runtime stage of the Containerfile without a container builder (no registry is
# reachable to pull its base images): runs the binary as the image runs it (its ENV, as a
# non-root user, in an empty data directory), and the image's HEALTHCHECK command against it.
# The port is a free one instead of 3000, for both.
set -euo pipefail
cd "$(dirname "$0")/.."
BINARY="${1:-target/release/federated-identity-service}"
fail() { echo "container check: $*" >&2; exit 1; }

# ENV of the runtime stage (the last FROM), as KEY=VALUE words.
mapfile -t ENV_VARS < <(awk '/^FROM /{stage++} stage==2' Containerfile \
  | sed -n '/^ENV /,/^[^ ]/p' | grep -o '[A-Z_]*=[^ \\]*')
[ "${#ENV_VARS[@]}" -ge 3 ] || fail "no ENV in the runtime stage"
grep -q '^USER fis' Containerfile || fail "the image does not run as a non-root user"
HEALTHCHECK="$(sed -n 's/.*CMD \["federated-identity-service", "\([a-z]*\)"\]/\1/p' Containerfile)"
[ "$HEALTHCHECK" = healthcheck ] || fail "HEALTHCHECK does not use the healthcheck command"

DATA="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
RUN_AS=()
if [ "$(id -u)" -eq 0 ]; then chown nobody "$DATA"; RUN_AS=(setpriv --reuid=nobody --regid=nogroup --clear-groups); fi
IMAGE_ENV=(env -i PATH=/usr/bin:/bin "${ENV_VARS[@]}" DATA_DIR="$DATA" LISTEN_PORT="$PORT")
(cd "$DATA" && exec "${IMAGE_ENV[@]}" "${RUN_AS[@]}" "$(realpath "$OLDPWD/$BINARY")" serve) > "$DATA.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA" "$DATA.log"' EXIT
for _ in $(seq 1 100); do
  if "${IMAGE_ENV[@]}" "$BINARY" "$HEALTHCHECK" --timeout 1 2>/dev/null; then break; fi
  kill -0 "$PID" 2>/dev/null || { cat "$DATA.log" >&2; fail "the service stopped"; }
  sleep 0.1
done
"${IMAGE_ENV[@]}" "$BINARY" "$HEALTHCHECK" || { cat "$DATA.log" >&2; fail "HEALTHCHECK fails"; }
grep -q "listening on http://0.0.0.0:$PORT" "$DATA.log" || fail "not listening on 0.0.0.0 as the image says"
[ -f "$DATA/federated-identity-service.db" ] || fail "no database in the data volume"
echo "container check passed"
