#!/bin/sh
# Build and run Weft's Swift fuzzers: fuzz/swift/run.sh [SECONDS] [TARGET...]
#
# Targets (default: all): config (fuzz_config: the YAML loader and validator)
# and admin (fuzz_admin: the admin socket's request decoder); "fuzz_config"
# is accepted for "config". For each: replay fuzz/swift/regressions/<target>/
# (inputs of bugs found and fixed), then fuzz for SECONDS (default 60) from a
# copy of fuzz/swift/corpus/<target>/ in fuzz/swift/.build/work/<target>/
# (the committed seeds never grow), with the dictionary <target>.dict. A
# crash, sanitizer report or broken invariant leaves its input in
# fuzz/crashes/swift-<target>-crash-<sha1> and makes the script exit non-zero
# after the other targets ran. Everything runs under nice -n 19 on one core.
# Logs: fuzz/swift/.build/<target>.log.
#
# Build: SwiftPM into fuzz/swift/.build, under flock $WEFT_BUILD_LOCK
# (default /tmp/weft-build.lock: one build at a time in this tree), unless
# the caller holds that lock already (an inherited descriptor on it).
# Environment: FUZZ_NO_BUILD=1 skips the build; FUZZ_BUILD=debug builds and
# runs the debug configuration (default release); FUZZ_WORK=dir keeps the
# working corpora there instead; FUZZ_FRESH=1 starts them from the seeds
# again (a kept corpus is first run through whole, which can take longer
# than a short SECONDS: libFuzzer does not stop during that pass);
# FUZZ_ARGS adds libFuzzer flags (e.g. FUZZ_ARGS=-runs=10000000 to stop
# after that many executions); FUZZ_SANITIZE=none builds without ASan (into
# fuzz/swift/.build/plain) for long runs: about 3.5 times as many inputs a
# second, Swift's own bounds and overflow checks still trap, but a memory
# error in C (libyaml) would go unseen. The test command keeps ASan.
# Exit: 0 clean, 1 a target failed, 2 the build failed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
crashes=$(dirname "$here")/crashes
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=""
for t in ${*:-config admin}; do targets="$targets ${t#fuzz_}"; done
work=${FUZZ_WORK:-$here/.build/work}
conf=${FUZZ_BUILD:-release}
build=$here/.build
san=address
if [ "${FUZZ_SANITIZE:-address}" = none ]; then
	build=$here/.build/plain
	san=""
fi
bin=$build/$conf
mkdir -p "$crashes" "$work" "$build"
command -v swift >/dev/null 2>&1 || PATH=/opt/swift/usr/bin:$PATH

if [ -z "${FUZZ_NO_BUILD:-}" ]; then
	echo "fuzz/swift: building ($conf)"
	built=$(date +%s)
	# -sanitize=fuzzer,address on every Swift module (the harnesses, WeftModel,
	# WeftAdmin, Yams) and fuzzer-no-link,address on C (Yams' libyaml): all of
	# it is instrumented for coverage and checked by ASan.
	# Release (-O, Swift's overflow and bounds checks kept) runs about 3 times
	# as many inputs a second as debug; FUZZ_BUILD=debug for debugging a report.
	# Run under `flock $lock ...` already (`flock /tmp/weft-build.lock scripts/test.sh`), an inherited
	# descriptor is open on the lock: taking it again by path would wait forever.
	lock=${WEFT_BUILD_LOCK:-/tmp/weft-build.lock}
	take="flock $lock"
	for fd in /proc/$$/fd/*; do [ "$(readlink "$fd" 2>/dev/null)" = "$lock" ] && take=""; done
	if ! $take nice -n 19 swift build -c "$conf" \
		--package-path "$here" --build-path "$build" \
		-Xswiftc -sanitize=fuzzer${san:+,$san} -Xcc -fsanitize=fuzzer-no-link${san:+,$san} \
		>"$here/.build/build.log" 2>&1; then
		grep -E 'error:' "$here/.build/build.log" | head -20 >&2
		echo "fuzz/swift: build failed (log: $here/.build/build.log)" >&2
		exit 2
	fi
	echo "fuzz/swift: built in $(( $(date +%s) - built ))s (waiting for the build lock included)"
fi

max_len() {
	case $1 in
	config) echo 16384 ;;
	*) echo 4096 ;;
	esac
}

# Swift's own crash backtracer would catch the trap before libFuzzer (and
# trips ASan reading the stack): libFuzzer reports and saves the input.
export SWIFT_BACKTRACE=enable=no
# ASan stops at the first report; leaks are checked per input (as fuzz/run.sh).
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}

failed=""
for t in $targets; do
	exe=$bin/fuzz_$t
	log=$here/.build/$t.log
	if [ ! -x "$exe" ]; then
		echo "fuzz_$t: no such target ($exe)" >&2
		failed="$failed $t"
		continue
	fi
	: >"$log"
	if [ -d "$here/regressions/$t" ] && [ -n "$(ls -A "$here/regressions/$t")" ]; then
		echo "fuzz_$t: replaying regressions/$t"
		if ! nice -n 19 "$exe" -artifact_prefix="$crashes/swift-$t-" "$here/regressions/$t"/* >>"$log" 2>&1; then
			echo "fuzz_$t: a regression input fails again (see $log)" >&2
			grep -E 'INVARIANT|ERROR|Fatal error|SUMMARY' "$log" | head -5 >&2
			failed="$failed $t"
			continue
		fi
	fi
	[ -n "${FUZZ_FRESH:-}" ] && rm -rf "${work:?}/$t"
	mkdir -p "$work/$t"
	cp -n "$here/corpus/$t"/* "$work/$t/" 2>/dev/null
	echo "fuzz_$t: ${secs}s"
	start=$(date +%s)
	touch "$here/.build/$t.mark"
	while :; do
		left=$((start + secs - $(date +%s)))
		[ "$left" -gt 0 ] || { rc=0; break; }
		nice -n 19 "$exe" -max_total_time="$left" -max_len="$(max_len "$t")" -timeout=60 -rss_limit_mb=2048 \
			-dict="$here/$t.dict" -print_final_stats=1 -artifact_prefix="$crashes/swift-$t-" ${FUZZ_ARGS:-} \
			"$work/$t" >>"$log" 2>&1
		rc=$?
		[ $rc -eq 0 ] && break
		# A timeout whose input then runs in time: this process was starved
		# (the cores are shared with other test runs), not slow. Carry on.
		art=$(ls -t "$crashes/swift-$t-timeout-"* 2>/dev/null | head -1)
		if [ -n "$art" ] && [ "$art" -nt "$here/.build/$t.mark" ] &&
			nice -n 19 "$exe" -timeout=60 "$art" >/dev/null 2>&1; then
			echo "fuzz_$t: a timeout that replays in time (starved by other load): resumed" | tee -a "$log"
			rm -f "$art"
			continue
		fi
		break
	done
	elapsed=$(( $(date +%s) - start ))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{ s += $1 } END { print s + 0 }')
	rate=$((execs / (elapsed > 0 ? elapsed : 1)))
	last=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.*\(cov: [0-9]*\) \(ft: [0-9]*\).*/\1 \2/p')
	echo "fuzz_$t: $execs executions in ${elapsed}s, $rate exec/s, ${last:-?}"
	if [ $rc -ne 0 ]; then
		echo "fuzz_$t: FAILED (exit $rc); input in fuzz/crashes/, report in $log:" >&2
		grep -E 'INVARIANT|ERROR|Fatal error|SUMMARY|Test unit written' "$log" | head -6 >&2
		failed="$failed $t"
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz/swift: failed:$failed" >&2
	exit 1
fi
echo "fuzz/swift: all targets clean"
