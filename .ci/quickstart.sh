#!/usr/bin/env bash
# The README's quickstart, step for step, against the binaries `cargo test
# --workspace` built (set RAFTCONF_BIN / HOT_RELOAD_BIN to use others).
# Ports are picked free so it can run beside anything; the README uses 7070.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${RAFTCONF_BIN:-$PWD/target/debug/raftconf}
HOT_RELOAD=${HOT_RELOAD_BIN:-$PWD/target/debug/examples/hot_reload}
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
peer=$(free_port)
export RAFTCONF_ENDPOINTS=127.0.0.1:$port
raftconf() { "$BIN" "$@"; }
fail() {
  echo "quickstart failed: $*" >&2
  for f in "$work"/*.log "$work"/*.out; do [ -f "$f" ] && { echo "--- $f"; cat "$f"; } >&2; done
  exit 1
}
pids=()
# Background processes are started from "$BIN" directly (not the shell
# function) so that these pids are the processes themselves.
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# Terminal 1: the server.
"$BIN" server --listen "127.0.0.1:$port" --peer-listen "127.0.0.1:$peer" --data-dir "$work/data" >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do raftconf status >/dev/null 2>&1 && break; sleep 0.1; done
raftconf status >/dev/null || fail "server did not come up"

# Terminal 2: publish a configuration.
raftconf tenant create demo
raftconf env create demo/dev
echo '{"greeting": "hello", "workers": 4}' | raftconf put demo/dev/app -m "first version"
raftconf get demo/dev/app

# Terminal 3: follow every change.
"$BIN" -o json watch demo/dev/ --from-revision 1 >"$work/watch.out" 2>&1 &
pids+=($!)

# Terminal 4: a service that hot-reloads it.
"$HOT_RELOAD" --endpoints "$RAFTCONF_ENDPOINTS" --path demo/dev/app >"$work/example.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^loaded' "$work/example.out" && break; sleep 0.1; done
grep -q '^loaded' "$work/example.out" || fail "example did not load its config"

# Back in terminal 2: change it, then try a bad value.
echo '{"greeting": "bonjour", "workers": 8}' | raftconf put demo/dev/app -m "more workers"
echo '{"greeting": "oops", "workers": 0}' | raftconf put demo/dev/app -m "typo"
raftconf history demo/dev/app

for _ in $(seq 100); do grep -q '^refused' "$work/example.out" && break; sleep 0.1; done
grep -q '^reloaded revision=4 .*bonjour' "$work/example.out" || fail "example did not reload revision 4"
grep -q '^refused' "$work/example.out" || fail "example did not refuse workers=0"
grep -q '"revision":5' "$work/watch.out" || fail "watch did not see revision 5"
echo "quickstart: ok"
