#!/usr/bin/env bash
# Run every Weft test: unit, stage (C core in-process on ring vdevs) and
# system (weftd as a process with namespaces, veth, a memif peer); then the
# stage tests again under ASan/UBSan, and the fuzzers (C stages, Swift loader and
# admin decoder) for a bounded time. As root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
./scripts/install.sh

swift build --build-tests

log=$(mktemp /tmp/weft-test.XXXXXX)
set +e
swift test --skip-build --disable-swift-testing 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One plain closing line: XCTest's last "Executed N tests, with F failures".
summary=$(grep -a -E 'Executed [0-9]+ tests?, with [0-9]+ failures?' "$log" | tail -n 1 || true)
total=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")
failed=$(sed -E 's/.*with ([0-9]+) failures?.*/\1/' <<<"$summary")
rm -f "$log"
if [ -z "$summary" ]; then
  echo "test.sh: no test summary found" >&2
  exit 1
fi

# The pci path on real (emulated) NICs: weftd in a QEMU guest binds them to vfio-pci.
echo "== vfio-pci in a QEMU guest (scripts/vfio-guest-test.sh)"
vfio_rc=0
./scripts/vfio-guest-test.sh || vfio_rc=$?

# The C core's stage tests again, built with AddressSanitizer (Swift and C) and
# UndefinedBehaviorSanitizer (C), in a build folder of their own.
echo "== stage tests under ASan/UBSan (.build-asan)"
asan_rc=0
if swift build --build-tests --sanitize=address -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined \
     --scratch-path .build-asan >/tmp/weft-asan-build.log 2>&1; then
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1} \
    swift test --skip-build --disable-swift-testing --scratch-path .build-asan --filter WeftCoreTests \
    >/tmp/weft-asan-test.log 2>&1 || asan_rc=$?
  grep -a -E 'Executed [0-9]+ tests?, with [0-9]+ failures?' /tmp/weft-asan-test.log | tail -n 1 || true
  grep -a -E 'ERROR: AddressSanitizer|runtime error' /tmp/weft-asan-test.log | head -5 || true
else
  asan_rc=$?
  tail -20 /tmp/weft-asan-build.log || true
fi

# Coverage-guided fuzzing of the C packet stages (libFuzzer, ASan, UBSan), bounded:
# the regressions replayed, then WEFT_FUZZ_SECONDS (60) per target from the corpus.
echo "== fuzzing (fuzz/run.sh ${WEFT_FUZZ_SECONDS:-60})"
fuzz_rc=0
./fuzz/run.sh "${WEFT_FUZZ_SECONDS:-60}" || fuzz_rc=$?
# The Swift side the same way: the YAML loader and validator, the admin request decoder
# (Swift's -sanitize=fuzzer,address; fuzz/swift/README.md).
echo "== fuzzing the Swift side (fuzz/swift/run.sh ${WEFT_FUZZ_SECONDS:-60})"
./fuzz/swift/run.sh "${WEFT_FUZZ_SECONDS:-60}" || fuzz_rc=$?

echo "$((total - failed)) passed, $failed failed; vfio guest: $([ $vfio_rc = 0 ] && echo ok || echo FAILED); sanitizer stage tests: $([ $asan_rc = 0 ] && echo ok || echo FAILED); fuzzing: $([ $fuzz_rc = 0 ] && echo ok || echo FAILED)"
[ "$rc" = 0 ] && [ "$vfio_rc" = 0 ] && [ "$asan_rc" = 0 ] && [ "$fuzz_rc" = 0 ]
