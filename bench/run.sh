#!/usr/bin/env bash
# raftconf and etcd side by side on this machine: installs etcd from Debian's
# packages if missing, builds raftconf, and runs `raftconf-bench compare` for a
# single node and for three nodes. Every process it starts is stopped by the
# bench itself (also on failure); data lives in temp dirs under bench/ (same
# disk as the build, both systems fsyncing) and is removed at the end.
#
#   bench/run.sh            full run (release build, 3 rounds; ~16 min after the build), tables
#                           written to bench/results/latest-{1,3}node.md
#   bench/run.sh --smoke    every scenario at tiny sizes (debug build, seconds);
#                           the same table format, written under target/
#   extra flags go to `raftconf-bench compare` (e.g. --rounds 5)
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=false
args=()
for arg in "$@"; do
    case "$arg" in
        --smoke) smoke=true ;;
        *) args+=("$arg") ;;
    esac
done

if ! command -v etcd >/dev/null 2>&1; then
    echo "== installing etcd (Debian package etcd-server)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The package's service is not started: there is no init system in a
    # container, and the bench starts its own members anyway.
    apt-get install -y -qq etcd-server >/dev/null
fi
etcd_bin=$(command -v etcd)
echo "== $("$etcd_bin" --version | head -1)"

# Ten thousand subscribers on their own connections need as many descriptors
# in the bench and in each server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if $smoke; then
    profile_dir=target/debug
    cargo build -q -p raftconf-server -p raftconf-bench
    out_dir=target/bench-smoke
    mode=(--smoke --rounds 2)
else
    profile_dir=target/release
    cargo build -q --release -p raftconf-server -p raftconf-bench
    out_dir=bench/results
    mode=(--rounds 3)
fi
mkdir -p "$out_dir"

# Data dirs are made in the current directory: run from bench/.
cd bench
for nodes in 1 3; do
    echo "== $nodes node(s) per system"
    "../$profile_dir/raftconf-bench" --bin "../$profile_dir/raftconf" compare \
        --etcd-bin "$etcd_bin" --nodes "$nodes" "${mode[@]}" \
        --out "../$out_dir/latest-${nodes}node.md" \
        --json-out "../$out_dir/latest-${nodes}node.json" "${args[@]}"
done
echo "== tables in $out_dir/"
