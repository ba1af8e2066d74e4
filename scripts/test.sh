#!/usr/bin/env bash
# The test suite, from a fresh Debian 12 machine: installs and starts what
# the tests need (scripts/env-up.sh), then runs unit and root integration
# tests against real dockerd, OVS, dnsmasq and kernel objects.
set -Eeuo pipefail
# No silent exits: a failing step names itself (script, line, command).
trap 'rc=$?; [ "$BASH_SUBSHELL" != 0 ] || echo "test.sh: line $LINENO: \`$BASH_COMMAND\` failed (exit $rc)" >&2' ERR
die() { echo "test.sh: $*" >&2; exit 1; }
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || die "the integration tests create kernel objects: run as root"
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) or add ~/.cargo/bin to PATH"
STARTED_ENV=0
if [ ! -f /tmp/pw-env/docker/docker.pid ] || ! kill -0 "$(cat /tmp/pw-env/docker/docker.pid)" 2>/dev/null; then
  STARTED_ENV=1
fi
scripts/env-up.sh || die "scripts/env-up.sh failed (its message is above)"
# Stop only what this run started.
[ "$STARTED_ENV" = 1 ] && trap 'scripts/env-down.sh' EXIT
# shellcheck disable=SC1091
source /tmp/pw-env/env.sh

cargo fmt --all -- --check || die "cargo fmt --check: the code is not formatted, run cargo fmt"
cargo clippy --all-targets -q -- -D warnings || die "cargo clippy found warnings (listed above)"
# The build without the overlay (`--no-default-features`) must stay clean too.
cargo clippy --no-default-features --all-targets -q -- -D warnings || die "cargo clippy --no-default-features found warnings (listed above)"
# Integration tests compare whole-host snapshots: one test at a time.
cargo test --all-targets -- --test-threads=1 || die "cargo test failed (the failing tests are listed above)"
# The overlay lab's Vagrantfile (no provider here: syntax and config only;
# its provisioning script runs in tests/overlay.rs).
(cd vagrant && vagrant validate --ignore-provider >/dev/null && rm -rf .vagrant) ||
  die "vagrant validate of vagrant/Vagrantfile failed"
# The .deb: static build, apt-get install, the installed binary's demo, remove.
scripts/test-deb.sh || die "scripts/test-deb.sh failed (its message is above)"
if [ -x scripts/vmtest.sh ]; then
  scripts/vmtest.sh || die "scripts/vmtest.sh (the VM tier) failed (its message is above)"
fi
