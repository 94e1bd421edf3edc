#!/usr/bin/env bash
# NSM connection set-up: 500 KERNEL connections through weftd's NSM API (a test
# NSMgr/registry and endpoint over real gRPC), first one caller at a time
# (the time per Request with 0-99, 100-199 and 400-499 connections already
# up), then 8 callers at once; each Close afterwards. The numbers come from
# NSMScaleSystemTests, which also checks that every connection works and that
# nothing is left; this script runs it in a release-like debug build and
# prints its measurements. Not a timed assertion anywhere.
#   perf/nsm-setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x /opt/swift/usr/bin/swift ] && export PATH=/opt/swift/usr/bin:$PATH
./scripts/install.sh >/dev/null
swift build --build-tests >/dev/null
swift test --skip-build --disable-swift-testing --filter NSMScaleSystemTests 2>&1 | grep -E "^scale:|passed|failed"
