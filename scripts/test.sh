#!/usr/bin/env bash
# The test suite, from a fresh Debian 12 machine: installs and starts what
# the tests need (scripts/env-up.sh), then runs unit and root integration
# tests against real dockerd, OVS, dnsmasq and kernel objects.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "test.sh: the integration tests create kernel objects: run as root" >&2
  exit 1
fi
STARTED_ENV=0
if [ ! -f /tmp/pw-env/docker/docker.pid ] || ! kill -0 "$(cat /tmp/pw-env/docker/docker.pid)" 2>/dev/null; then
  STARTED_ENV=1
fi
scripts/env-up.sh
# Stop only what this run started.
[ "$STARTED_ENV" = 1 ] && trap 'scripts/env-down.sh' EXIT
# shellcheck disable=SC1091
source /tmp/pw-env/env.sh

cargo fmt --all -- --check
cargo clippy --all-targets -q -- -D warnings
# Integration tests compare whole-host snapshots: one test at a time.
cargo test --all-targets -- --test-threads=1
# The overlay lab's Vagrantfile (no provider here: syntax and config only;
# its provisioning script runs in tests/overlay.rs).
(cd vagrant && vagrant validate --ignore-provider >/dev/null && rm -rf .vagrant)
# The .deb: static build, apt-get install, the installed binary's demo, remove.
scripts/test-deb.sh
if [ -x scripts/vmtest.sh ]; then
  scripts/vmtest.sh
fi
