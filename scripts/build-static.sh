#!/usr/bin/env bash
# Build pipework as one statically linked file (glibc, crt-static) with the
# release profile from Cargo.toml, and check that it needs no loader.
# Prints the path and size on stdout: PATH SIZE_BYTES.
# Usage: scripts/build-static.sh   (no root needed)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-gnu
# --target keeps RUSTFLAGS away from build scripts and proc macros, which
# must stay dynamic; only the pipework binary is linked statically.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked -q --target "$TARGET"
BIN=${CARGO_TARGET_DIR:-$PWD/target}/$TARGET/release/pipework

desc=$(file -b "$BIN")
case "$desc" in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) echo "build-static: $BIN is not static: $desc" >&2; exit 1 ;;
esac
# ldd says "not a dynamic executable" (exit 1) for a plain static file and
# "statically linked" for a static PIE.
if ldd_out=$(ldd "$BIN" 2>&1); then :; fi
case "$ldd_out" in
  *"not a dynamic executable"* | *"statically linked"*) ;;
  *) echo "build-static: ldd lists libraries for $BIN:" >&2; echo "$ldd_out" >&2; exit 1 ;;
esac
"$BIN" --version >/dev/null
size=$(stat -c %s "$BIN")
echo "build-static: $desc" >&2
echo "$BIN $size"
