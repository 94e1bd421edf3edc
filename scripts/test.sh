#!/usr/bin/env bash
# Run every Weft test: unit, stage (C core in-process on ring vdevs) and
# system (weftd as a process with namespaces, veth, a memif peer). As root.
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
echo "$((total - failed)) passed, $failed failed"
exit "$rc"
