#!/usr/bin/env bash
# Build a stand-in for debian:bookworm-slim from Debian packages, for machines that reach
# no container registry: debootstrap --variant=minbase from this machine's apt mirror,
# trimmed like the official slim image, then `docker import`.
# Usage: make-base-image.sh [NAME]   (default ytmp3-stand-in:bookworm; skipped if it exists)
# Then: docker build --build-arg BASE_IMAGE=NAME ...  (the Dockerfile is otherwise unchanged)
set -euo pipefail
[[ $EUID -eq 0 ]] || exec sudo -E "$0" "$@"

name=${1:-ytmp3-stand-in:bookworm}
suite=bookworm

if docker image inspect "$name" >/dev/null 2>&1; then
    echo "make-base-image: $name exists, skipping"
    exit 0
fi
command -v debootstrap >/dev/null || {
    echo "make-base-image: debootstrap missing (run start-engine.sh)" >&2
    exit 1
}

# The first Debian mirror (not the security one) this machine's apt uses.
mirror=$(
    {
        grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
        grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            sed -E 's/^deb (\[[^]]*\] )?//' | awk '{print $1}'
    } | grep -E '/debian/?$' | head -n 1
) || true
mirror=${mirror:-http://deb.debian.org/debian}
security=${mirror%/debian*}/debian-security

root=$(mktemp -d /tmp/ytmp3-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT

echo "make-base-image: debootstrap $suite from $mirror"
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2
    exit 1
}
rm -f "$root.log"

# Like debian:bookworm-slim: deb822 sources with updates and security, no docs, no caches.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
DPKG
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
APT
# This machine's mirror may serve a dated snapshot whose Release files have expired.
cat >"$root/etc/apt/apt.conf.d/99stand-in-snapshot" <<'APT'
Acquire::Check-Valid-Until "false";
Acquire::Check-Date "false";
APT
find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
rm -rf "$root"/usr/share/{man,info,groff,lintian,locale}/* \
    "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log

tar -C "$root" --numeric-owner -c . |
    docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - "$name" >/dev/null
echo "make-base-image: $name ($(docker image inspect -f '{{.Size}}' "$name" | numfmt --to=si)B)"
