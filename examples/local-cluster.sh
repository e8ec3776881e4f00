#!/usr/bin/env bash
# A three-node raftconf cluster on this machine, for trying things out.
#
#   examples/local-cluster.sh start        # start (or complete) the cluster; prints the endpoints
#   examples/local-cluster.sh status       # each node: running or not, and the cluster as node 1 sees it
#   examples/local-cluster.sh kill N       # SIGKILL node N (a crash); `start` brings it back
#   examples/local-cluster.sh stop         # stop the nodes this script started (SIGTERM, then wait)
#   examples/local-cluster.sh clean        # stop, then delete the cluster's directory
#
# Everything lives under one directory: $RAFTCONF_CLUSTER_DIR, default
# ./raftconf-local-cluster (node N: data in nN/, log in nN.log, pid in nN.pid).
# Node N listens for clients on 127.0.0.1:(BASE + 100·N) and for peers on the
# port after it; BASE is $RAFTCONF_BASE_PORT, default 7000 (so 7100, 7200,
# 7300). The binary is $RAFTCONF_BIN, else target/release/raftconf, else
# target/debug/raftconf (build one with `cargo build --release`).
#
# `stop` only signals a pid this script recorded, and only while that pid is
# still a `raftconf server` on this cluster's directory: it never stops
# anything else.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${RAFTCONF_CLUSTER_DIR:-$PWD/raftconf-local-cluster}
base=${RAFTCONF_BASE_PORT:-7000}
nodes=(1 2 3)

bin=${RAFTCONF_BIN:-}
if [ -z "$bin" ]; then
  for candidate in "$root/target/release/raftconf" "$root/target/debug/raftconf"; do
    if [ -x "$candidate" ]; then bin=$candidate; break; fi
  done
fi

client_addr() { echo "127.0.0.1:$((base + 100 * $1))"; }
peer_addr() { echo "127.0.0.1:$((base + 100 * $1 + 1))"; }
endpoints() {
  local out=() n
  for n in "${nodes[@]}"; do out+=("$(client_addr "$n")"); done
  (IFS=,; echo "${out[*]}")
}
peers() {
  local out=() n
  for n in "${nodes[@]}"; do out+=("$n=$(peer_addr "$n")"); done
  (IFS=,; echo "${out[*]}")
}

# The pid of node N if it is running and is the server this script started.
running_pid() {
  local pidfile="$dir/n$1.pid" pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -r "/proc/$pid/cmdline" ] || return 1
  # Our process: a raftconf server on this node's data directory.
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  case "$cmdline" in
    *" server "*"--data-dir $dir/n$1 "*) ;;
    *) return 1 ;;
  esac
  echo "$pid"
}

need_bin() {
  if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "no raftconf binary: run 'cargo build --release' or set RAFTCONF_BIN" >&2
    exit 1
  fi
}

start() {
  need_bin
  mkdir -p "$dir"
  local n
  for n in "${nodes[@]}"; do
    if pid=$(running_pid "$n"); then
      echo "node $n already running (pid $pid)"
      continue
    fi
    # New log per start, the previous one kept as .1.
    [ -f "$dir/n$n.log" ] && mv "$dir/n$n.log" "$dir/n$n.log.1"
    RUST_LOG=${RUST_LOG:-info} nohup "$bin" server --node-id "$n" \
      --listen "$(client_addr "$n")" --peer-listen "$(peer_addr "$n")" \
      --data-dir "$dir/n$n" --peers "$(peers)" >"$dir/n$n.log" 2>&1 </dev/null &
    echo $! >"$dir/n$n.pid"
    echo "node $n started (pid $!): clients $(client_addr "$n"), peers $(peer_addr "$n")"
  done
  # Ready when every node names a leader.
  local deadline=$((SECONDS + 30)) ready
  while :; do
    ready=0
    for n in "${nodes[@]}"; do
      if "$bin" --endpoints "$(client_addr "$n")" -o json status 2>/dev/null |
        grep -q '"leader_id":[1-9]'; then
        ready=$((ready + 1))
      fi
    done
    [ "$ready" -eq "${#nodes[@]}" ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "the cluster did not elect a leader within 30 s; logs are in $dir/n*.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  echo
  echo "cluster ready; data and logs in $dir"
  echo "endpoints: $(endpoints)"
  echo "try:       export RAFTCONF_ENDPOINTS=$(endpoints)"
  echo "           $bin cluster status"
}

stop() {
  local n pid stopped=()
  for n in "${nodes[@]}"; do
    if pid=$(running_pid "$n"); then
      kill -TERM "$pid"
      stopped+=("$n:$pid")
    fi
    rm -f "$dir/n$n.pid"
  done
  local entry deadline=$((SECONDS + 15))
  for entry in "${stopped[@]}"; do
    n=${entry%%:*}
    pid=${entry#*:}
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        echo "node $n (pid $pid) did not stop within 15 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
    echo "node $n stopped"
  done
  [ "${#stopped[@]}" -gt 0 ] || echo "no node of $dir was running"
}

status() {
  local n pid
  for n in "${nodes[@]}"; do
    if pid=$(running_pid "$n"); then
      echo "node $n: running (pid $pid), clients $(client_addr "$n")"
    else
      echo "node $n: stopped"
    fi
  done
  need_bin
  "$bin" --endpoints "$(endpoints)" cluster status || true
}

kill_node() {
  local n=${1:?usage: $0 kill N} pid
  if pid=$(running_pid "$n"); then
    kill -KILL "$pid"
    rm -f "$dir/n$n.pid"
    echo "node $n killed (pid $pid); '$0 start' restarts it"
  else
    echo "node $n is not running"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  kill) kill_node "${2:-}" ;;
  clean)
    stop
    rm -rf "$dir"
    echo "removed $dir"
    ;;
  *)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
