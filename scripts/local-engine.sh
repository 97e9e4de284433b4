#!/usr/bin/env bash
# A throw-away Docker engine (Debian's docker.io) inside a private network namespace, for the
# offline local cluster and its test: nothing it creates (bridges, veths, docker-proxy ports,
# containers) touches the machine's own network.
#
#   scripts/local-engine.sh start DIR   # prints DOCKER_HOST=unix://DIR/docker.sock
#   scripts/local-engine.sh stop DIR    # containers, engine, mounts, namespace and DIR gone
#
# DIR must not exist yet (start creates it). The engine: its own netns (icmpfwd-engine-<n>),
# `--iptables=false --ip6tables=false`, no default bridge, every network it makes inside
# 198.19.0.0/16 (default-address-pools), data and exec roots and the socket under DIR.
# `ip netns exec` would remount /sys and hide the cgroup v1 hierarchies dockerd needs
# ("Devices cgroup isn't mounted"), so dockerd enters the namespace with nsenter --net.
set -euo pipefail

DOCKER=${DOCKER:-$([ -x /usr/bin/docker ] && echo /usr/bin/docker || echo docker)}
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
dir=$(realpath -m "$dir")

start() {
  [ "$(id -u)" = 0 ] || { echo "local-engine: run as root" >&2; exit 1; }
  command -v dockerd >/dev/null || { echo "local-engine: dockerd is missing: apt-get install -y docker.io" >&2; exit 1; }
  [ ! -e "$dir" ] || { echo "local-engine: $dir exists" >&2; exit 1; }
  mkdir -p "$dir/data" "$dir/exec"
  local ns=icmpfwd-engine-$$
  echo "$ns" >"$dir/netns"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  # Containers go into their own cgroup (cgroupfs driver), so stop can find every process left.
  cat >"$dir/daemon.json" <<JSON
{
  "cgroup-parent": "/$ns",
  "iptables": false,
  "ip6tables": false,
  "ip-masq": false,
  "bridge": "none",
  "default-address-pools": [{ "base": "198.19.0.0/16", "size": 24 }],
  "log-level": "warn"
}
JSON
  # setsid: the engine outlives this script, in its own session (stop kills it by its pid).
  setsid nsenter --net="/var/run/netns/$ns" dockerd \
    --config-file "$dir/daemon.json" --data-root "$dir/data" --exec-root "$dir/exec" \
    --host "unix://$dir/docker.sock" --pidfile "$dir/docker.pid" \
    --containerd-namespace icmpfwd-engine --containerd-plugins-namespace icmpfwd-engine-plugins \
    </dev/null >"$dir/dockerd.log" 2>&1 &
  echo $! >"$dir/nsenter.pid"
  local deadline=$((SECONDS + 60))
  until DOCKER_HOST="unix://$dir/docker.sock" "$DOCKER" version >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "$(cat "$dir/nsenter.pid")" 2>/dev/null; then
      echo "local-engine: dockerd did not start; its log:" >&2
      tail -n 30 "$dir/dockerd.log" >&2
      stop
      exit 1
    fi
    sleep 0.5
  done
  echo "DOCKER_HOST=unix://$dir/docker.sock"
}

stop() {
  [ -d "$dir" ] || return 0
  local sock="unix://$dir/docker.sock" pid=""
  if [ -S "$dir/docker.sock" ]; then
    local ids
    ids=$(DOCKER_HOST=$sock timeout 20 "$DOCKER" ps -aq 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || DOCKER_HOST=$sock timeout 60 "$DOCKER" rm -f $ids >/dev/null 2>&1 || true
  fi
  [ -f "$dir/docker.pid" ] && pid=$(cat "$dir/docker.pid")
  [ -n "$pid" ] || { [ -f "$dir/nsenter.pid" ] && pid=$(cat "$dir/nsenter.pid"); }
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # Whatever the engine started and left behind: processes in its namespace (containerd, shims,
  # docker-proxy), processes named by a path under DIR, and container processes in its cgroup.
  local ns="" p
  [ -f "$dir/netns" ] && ns=$(cat "$dir/netns")
  for p in $( { [ -z "$ns" ] || ip netns pids "$ns" 2>/dev/null
               grep -l -F -- "$dir/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3
               [ -z "$ns" ] || find "/sys/fs/cgroup/pids/$ns" -name cgroup.procs -exec cat {} + 2>/dev/null
             } | sort -u); do
    [ "$p" != $$ ] && kill -KILL "$p" 2>/dev/null || true
  done
  if [ -n "$ns" ]; then
    for _ in $(seq 1 20); do
      [ -z "$(find /sys/fs/cgroup/*/"$ns" -name cgroup.procs -exec cat {} + 2>/dev/null)" ] && break
      sleep 0.25
    done
    find /sys/fs/cgroup/*/"$ns" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  fi
  # Container namespaces, overlay mounts, shm: every mount under DIR, deepest first.
  local m
  for m in $(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  [ -z "$ns" ] || ip netns delete "$ns" 2>/dev/null || true
  rm -rf "$dir"
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
