#!/bin/sh
# Build and run Weft's fuzzers: fuzz/run.sh [SECONDS] [TARGET...]
#
# For each target (default: all): replay fuzz/regressions/<target>/ (inputs
# of bugs found and fixed), then fuzz for SECONDS (default 60) from
# fuzz/corpus/<target>/ (read only; what the run learns goes to
# fuzz/out/work/<target>/). A crash, sanitizer report or broken invariant
# leaves its input in fuzz/crashes/<target>-crash-<sha1> and makes the
# script exit non-zero after the other targets ran. Everything runs under
# nice -n 19: the machine's cores are shared. Logs: fuzz/out/<target>.log.
#
# Environment: FUZZ_NO_BUILD=1 skips the build; FUZZ_OUT=dir builds and
# works there instead of fuzz/out; FUZZ_ARGS adds libFuzzer
# flags (e.g. FUZZ_ARGS=-runs=10000000 to stop after that many executions).
set -u
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-60}
[ $# -gt 0 ] && shift
targets=${*:-"uplink bridge replicate p2p memif"}
out=${FUZZ_OUT:-$here/out}
mkdir -p "$here/crashes" "$out/work"

if [ -z "${FUZZ_NO_BUILD:-}" ]; then
	nice -n 19 "$here/build.sh" $targets || { echo "fuzz: build failed" >&2; exit 2; }
fi

max_len() {
	case $1 in
	uplink) echo 4096 ;;
	p2p) echo 16384 ;;
	*) echo 8192 ;;
	esac
}

# One EAL per process; ASan/UBSan stop at the first report; leaks checked per input.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=""
# The harnesses' own poisoning must catch what it is there for (common.h).
first=$(echo $targets | cut -d' ' -f1)
for st in uaf tail; do
	if ! WEFT_FUZZ_SELFTEST=$st nice -n 19 "$out/fuzz_$first" -runs=0 2>&1 | grep -q "AddressSanitizer: use-after-poison"; then
		echo "fuzz: self-test '$st' was not caught: the harness's ASan poisoning is broken" >&2
		exit 2
	fi
done
for t in $targets; do
	bin=$out/fuzz_$t
	log=$out/$t.log
	: >"$log"
	if [ -d "$here/regressions/$t" ] && [ -n "$(ls -A "$here/regressions/$t")" ]; then
		echo "fuzz_$t: replaying regressions/$t"
		if ! nice -n 19 "$bin" -artifact_prefix="$here/crashes/$t-" "$here/regressions/$t"/* >>"$log" 2>&1; then
			echo "fuzz_$t: a regression input fails again (see $log)" >&2
			failed="$failed $t"
			continue
		fi
	fi
	mkdir -p "$out/work/$t"
	echo "fuzz_$t: ${secs}s"
	start=$(date +%s)
	touch "$out/$t.mark"
	while :; do
		left=$((start + secs - $(date +%s)))
		[ "$left" -gt 0 ] || { rc=0; break; }
		nice -n 19 "$bin" -max_total_time="$left" -max_len="$(max_len "$t")" -timeout=60 -rss_limit_mb=2048 \
			-print_final_stats=1 -artifact_prefix="$here/crashes/$t-" ${FUZZ_ARGS:-} \
			"$out/work/$t" "$here/corpus/$t" >>"$log" 2>&1
		rc=$?
		[ $rc -eq 0 ] && break
		# A timeout whose input then runs in time: this process was starved
		# (the cores are shared with other test runs), not slow. Carry on.
		art=$(ls -t "$here/crashes/$t-timeout-"* 2>/dev/null | head -1)
		if [ -n "$art" ] && [ "$art" -nt "$out/$t.mark" ] &&
			nice -n 19 "$bin" -timeout=60 "$art" >/dev/null 2>&1; then
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
		grep -E 'ERROR|INVARIANT|runtime error|SUMMARY' "$log" | head -5 >&2
		failed="$failed $t"
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz: failed:$failed" >&2
	exit 1
fi
echo "fuzz: all targets clean"
