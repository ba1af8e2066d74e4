#!/usr/bin/env bash
# The main job on a fresh machine: build pipework and run its built-in demo
# (two throwaway network namespaces on a new bridge, a TCP payload between
# them, everything removed afterwards). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
exec ./target/release/pipework demo
