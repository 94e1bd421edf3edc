#!/bin/sh
# Build Weft's coverage-guided fuzzers: the real C core (CShims/weft/src and
# CShims/kernel/src) compiled with libFuzzer, ASan and UBSan, linked against
# Debian's (uninstrumented) DPDK 22.11. Output: fuzz/out/<target>.
#
# Compiler: CC, default Swift's clang (/opt/swift/usr/bin/clang, 21), which
# ships libclang_rt.fuzzer; Debian's clang-14 + libclang-rt-14-dev works too
# (CC=clang-14; it needs -fuse-ld=lld only if ld.lld exists, else drop LD).
# CPU-heavy: run under nice (fuzz/run.sh does).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=${FUZZ_OUT:-$here/out}
CC=${CC:-/opt/swift/usr/bin/clang}
JOBS=${JOBS:-2}
SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# The flags SwiftPM uses for the C targets (Package.swift: dpdkCFlags), at -O1 -g.
CFLAGS="-g -O1 -I/usr/include/dpdk -I/usr/include/x86_64-linux-gnu/dpdk -include rte_config.h \
 -march=corei7 -Wall -Wno-address-of-packed-member -D_GNU_SOURCE -DALLOW_EXPERIMENTAL_API \
 -I$root/CShims/weft/include -I$root/CShims/weft/src -I$root/CShims/kernel/include"
LIBS="-lrte_eal -lrte_ethdev -lrte_mbuf -lrte_mempool -lrte_ring -lrte_rcu -lrte_net -lrte_kvargs \
 -lrte_telemetry -lrte_net_ring -lrte_bus_vdev -lmnl -lbpf -lxdp -lpcap -lpthread"
LD="-fuse-ld=lld"
command -v ld.lld >/dev/null 2>&1 || [ -x "$(dirname "$CC")/ld.lld" ] || LD=""

mkdir -p "$out/obj"
# The core, once, into an archive: a harness that includes one of its files
# (fuzz_p2p includes ports/afpacket.c for its static RX parsing) defines
# that file's symbols itself, and the archive's copy is then never pulled in.
srcs=$(cd "$root" && ls CShims/weft/src/*/*.c CShims/kernel/src/*.c)
printf '%s\n' $srcs | xargs -P "$JOBS" -I{} sh -c '
	o="'"$out"'/obj/$(echo {} | tr / _).o"
	if [ ! -e "$o" ] || [ "'"$root"'/{}" -nt "$o" ] || [ "'"$here"'/build.sh" -nt "$o" ]; then
		'"$CC $CFLAGS $SAN"' -c "'"$root"'/{}" -o "$o" || exit 255
	fi'
rm -f "$out/libweftcore.a"
ar rcs "$out/libweftcore.a" "$out"/obj/*.o

targets=${*:-"uplink bridge replicate p2p memif"}
for t in $targets; do
	echo "build fuzz_$t"
	$CC $CFLAGS $SAN -c "$here/fuzz_$t.c" -o "$out/fuzz_$t.o"
	$CC -fsanitize=fuzzer,address,undefined $LD "$out/fuzz_$t.o" "$out/libweftcore.a" $LIBS -o "$out/fuzz_$t"
done
