#!/usr/bin/env bash
# Builds the local cluster's images without any registry but Debian's package repository:
#
#   icmpfwd-local/base:bookworm   debootstrap --variant=minbase --include=<BASE_PACKAGES>, `docker import`
#   icmpfwd/icmpfwd:local         Dockerfile --target local: the host's built dist/, production
#                                 node_modules/, TUN addon and Node 20 binary on that base
#   icmpfwd/policy-py:local       clients/python/Dockerfile --target local
#
# Prometheus runs from the base (Debian's prometheus package); the offline compose override
# (deploy/compose.offline.yml) uses these tags. Needs root, debootstrap, a Docker engine
# (DOCKER_HOST), `npm ci && npm run build` done, and Node 20 as `node`.
#
# The debootstrap root file system is cached as a tarball under $ICMPFWD_IMAGE_CACHE (default
# /var/cache/icmpfwd-local-images), keyed by suite, mirror and package list; ICMPFWD_IMAGE_CACHE=off
# builds it afresh and keeps nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_PACKAGES=iproute2,iputils-ping,ca-certificates,python3,python3-grpcio,python3-protobuf,prometheus
CACHE=${ICMPFWD_IMAGE_CACHE:-/var/cache/icmpfwd-local-images}
BASE_TAG=icmpfwd-local/base:$SUITE
# Debian's docker client (docker.io) by default: another `docker` earlier on PATH may be a newer
# client that speaks a newer API than Debian's engine.
DOCKER=${DOCKER:-$([ -x /usr/bin/docker ] && echo /usr/bin/docker || echo docker)}

log() { printf '== local-images: %s\n' "$*" >&2; }
die() { printf 'local-images: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y debootstrap"
[ -f dist/main.js ] && [ -f clients/ts/dist/cli.js ] ||
  die "dist/ is missing: run npm ci && npm run build first"
[ -f native/build/Release/icmpfwd_tun.node ] || die "the TUN addon is missing: run npm ci first"
NODE=$(command -v node) || die "node is missing"
NODE_MAJOR=$("$NODE" -p 'process.versions.node.split(".")[0]')
[ "$NODE_MAJOR" = 20 ] || die "node is $("$NODE" --version); the images need Node 20"
"$DOCKER" version >/dev/null || die "no Docker engine at ${DOCKER_HOST:-the default socket}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/icmpfwd-local-images.XXXXXX")
cleanup() {
  # debootstrap may leave proc/sys mounted in the root file system when it fails.
  if [ -d "$WORK/rootfs" ]; then
    grep -o " $WORK/rootfs[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" || true; done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- 1. the base: debootstrap + docker import (cached) ----
key=$(printf '%s\n' "$SUITE" "$MIRROR" "$BASE_PACKAGES" minbase | sha256sum | cut -c1-16)
if "$DOCKER" image inspect "$BASE_TAG" --format '{{index .Config.Labels "icmpfwd.base-key"}}' 2>/dev/null |
  grep -qx "$key"; then
  log "base $BASE_TAG is up to date ($key)"
else
  tarball=""
  if [ "$CACHE" != off ] && [ -s "$CACHE/base-$key.tar" ]; then
    tarball=$CACHE/base-$key.tar
    log "base from the cache: $tarball"
  else
    log "debootstrap $SUITE ($BASE_PACKAGES) from $MIRROR"
    start=$SECONDS
    debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$WORK/rootfs" "$MIRROR" \
      >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    # Nothing the images need: downloaded .debs, package lists, docs.
    rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/* \
      "$WORK"/rootfs/usr/share/doc/* "$WORK"/rootfs/usr/share/man/*
    log "debootstrap done in $((SECONDS - start)) s ($(du -sh "$WORK/rootfs" | cut -f1))"
    if [ "$CACHE" != off ]; then
      mkdir -p "$CACHE"
      tar -C "$WORK/rootfs" --numeric-owner -cf "$CACHE/base-$key.tar.part.$$" .
      mv "$CACHE/base-$key.tar.part.$$" "$CACHE/base-$key.tar"
      tarball=$CACHE/base-$key.tar
    else
      tar -C "$WORK/rootfs" --numeric-owner -cf "$WORK/base.tar" .
      tarball=$WORK/base.tar
    fi
    rm -rf "$WORK/rootfs"
  fi
  "$DOCKER" import --change "LABEL icmpfwd.base-key=$key" --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tarball" "$BASE_TAG" >/dev/null
  log "imported $BASE_TAG ($key)"
fi

# ---- 2. icmpfwd/icmpfwd:local: prebuilt artifacts only ----
ctx=$WORK/icmpfwd
mkdir -p "$ctx/app/native/build/Release" "$ctx/app/clients/ts" "$ctx/bin"
cp "$NODE" "$ctx/node"
cp -a package.json package-lock.json dist proto "$ctx/app/"
cp -a clients/ts/package.json clients/ts/dist "$ctx/app/clients/ts/"
cp native/build/Release/icmpfwd_tun.node "$ctx/app/native/build/Release/"
cp -a deploy/bin/. "$ctx/bin/"
# Production dependencies only: a copy of node_modules pruned by npm from the lockfile (offline;
# nothing is fetched, nothing is built).
cp -a node_modules "$ctx/app/"
(cd "$ctx/app" && npm prune --omit=dev --ignore-scripts --offline --no-audit --no-fund >/dev/null)
rm -f "$ctx/app/package-lock.json"
log "building icmpfwd/icmpfwd:local (node $("$NODE" --version), $(du -sh "$ctx" | cut -f1) of artifacts)"
DOCKER_BUILDKIT=1 "$DOCKER" build --quiet --network none --target local --build-arg "BASE=$BASE_TAG" \
  -f Dockerfile -t icmpfwd/icmpfwd:local "$ctx" >/dev/null

# ---- 3. icmpfwd/policy-py:local ----
log "building icmpfwd/policy-py:local"
DOCKER_BUILDKIT=1 "$DOCKER" build --quiet --network none --target local --build-arg "BASE=$BASE_TAG" \
  -f clients/python/Dockerfile -t icmpfwd/policy-py:local clients/python >/dev/null

log "images: $BASE_TAG icmpfwd/icmpfwd:local icmpfwd/policy-py:local"
