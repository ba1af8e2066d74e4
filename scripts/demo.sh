#!/usr/bin/env bash
# The main job on a fresh machine: build pipework and run its built-in demo
# (two throwaway network namespaces on a new bridge, a TCP payload between
# them, everything removed afterwards). Needs root and Rust, nothing else.
set -Eeuo pipefail
# No silent exits: a failing step names itself (script, line, command).
trap 'rc=$?; [ "$BASH_SUBSHELL" != 0 ] || echo "demo.sh: line $LINENO: \`$BASH_COMMAND\` failed (exit $rc)" >&2' ERR
die() { echo "demo.sh: $*" >&2; exit 1; }
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || die "the demo creates network namespaces and a bridge: run as root"
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) or add ~/.cargo/bin to PATH"
cargo build --release -q || die "cargo build --release failed (the compiler's messages are above)"
# pipework reports its own failures in one line; say which step it was.
./target/release/pipework demo || die "pipework demo failed (its message is above)"
