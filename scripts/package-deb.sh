#!/usr/bin/env bash
# Builds the Debian package target/debian/federated-identity-service_<version>_<arch>.deb from
# the release binary: the binary, the hardened systemd unit (packaging/*.service), the
# configuration at /etc/twake/federated-identity-service.conf (a conffile), the docs, and the
# maintainer scripts that create the system user. Needs only dpkg-deb (Debian's dpkg).
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=federated-identity-service
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
ARCH="$(dpkg --print-architecture)"
cargo build --release --locked
ROOT="target/debian/${NAME}_${VERSION}_${ARCH}"
rm -rf "$ROOT" && mkdir -p "$ROOT/DEBIAN"

install -D -m 0755 "target/release/$NAME" "$ROOT/usr/bin/$NAME"
install -D -m 0644 "packaging/$NAME.service" "$ROOT/lib/systemd/system/$NAME.service"
install -D -m 0640 "packaging/$NAME.conf" "$ROOT/etc/twake/$NAME.conf"
for doc in README.md docs/*.md; do
  install -D -m 0644 "$doc" "$ROOT/usr/share/doc/$NAME/$(basename "$doc")"
done
printf 'federated-identity-service\nLicense: AGPL-3.0-or-later\n' > "$ROOT/usr/share/doc/$NAME/copyright"

INSTALLED_KB="$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)"
cat > "$ROOT/DEBIAN/control" <<CONTROL
Package: $NAME
Version: $VERSION
Architecture: $ARCH
Maintainer: federated-identity-service maintainers <root@localhost>
Installed-Size: $INSTALLED_KB
Depends: libc6, passwd
Section: net
Priority: optional
Homepage: https://github.com/matrix-org/matrix-spec-proposals/pull/4004
Description: Matrix Identity Service with the MSC4004 unified view
 A Matrix Identity Service (Identity Service API v2) in one binary, with MSC4004: trusted
 servers push the hashes of their users' addresses so that one lookup tells which server
 knows a contact. Drop-in replacement for the Node.js @twake/federated-identity-service.
CONTROL
echo "/etc/twake/$NAME.conf" > "$ROOT/DEBIAN/conffiles"

cat > "$ROOT/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if ! getent passwd federated-identity-service >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/federated-identity-service --no-create-home \
      --shell /usr/sbin/nologin federated-identity-service
  fi
  chown root:federated-identity-service /etc/twake/federated-identity-service.conf
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable federated-identity-service.service >/dev/null
    systemctl restart federated-identity-service.service || true
  fi
fi
SCRIPT
cat > "$ROOT/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl stop federated-identity-service.service || true
  systemctl disable federated-identity-service.service >/dev/null || true
fi
SCRIPT
cat > "$ROOT/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
if [ "$1" = purge ]; then
  rm -rf /var/lib/federated-identity-service
  if getent passwd federated-identity-service >/dev/null; then userdel federated-identity-service || true; fi
fi
SCRIPT
chmod 0755 "$ROOT/DEBIAN/postinst" "$ROOT/DEBIAN/prerm" "$ROOT/DEBIAN/postrm"

dpkg-deb --root-owner-group --build "$ROOT" "target/debian/" >/dev/null
echo "target/debian/${NAME}_${VERSION}_${ARCH}.deb"
