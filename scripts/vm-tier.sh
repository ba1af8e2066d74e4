#!/usr/bin/env bash
# The VM tier: build the integration tests that need kernel features this
# host lacks, and run each under Debian's stock kernel with scripts/vmtest.sh.
#   scripts/vm-tier.sh [TEST...]     (default: vm_kernel and every tests/*_vm.rs)
# Extra arguments for the test harness go in VM_TEST_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    tests=(vm_kernel)
    for f in tests/*_vm.rs; do
        [ -e "$f" ] && tests+=("$(basename "$f" .rs)")
    done
fi
status=0
for t in "${tests[@]}"; do
    # cargo prints "Executable tests/NAME.rs (target/debug/deps/NAME-HASH)".
    exe=$(cargo test --no-run --test "$t" 2>&1 | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -n1)
    [ -n "$exe" ] || { echo "vm-tier: cannot build test $t" >&2; exit 1; }
    echo "vm-tier: $t under Debian's kernel ($exe)" >&2
    # One test at a time: two TCG vCPUs are slow, and the tests ping.
    # The SR-IOV tests get an emulated igb NIC with VFs.
    sriov=0
    case $t in *sriov*) sriov=1 ;; esac
    # The encrypted overlay needs WireGuard (and what it depends on) and
    # nftables for the agent's VXLAN guard.
    modules=${PIPEWORK_VM_MODULES:-}
    case $t in *wg*) modules="$modules wireguard nf_tables" ;; esac
    PIPEWORK_VM_MODULES=$modules PIPEWORK_VM_SRIOV=$sriov scripts/vmtest.sh "$exe" --test-threads=1 ${VM_TEST_ARGS:-} || status=$?
done
exit $status
