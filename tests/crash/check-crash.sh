#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Driver of `make check-crash` (see tests/crash.mk): the power-loss
# simulator, the corrupt-media matrix, the replay fuzzer and the nbdkit
# fault tests.  Every step runs even if an earlier one failed; the last
# line is "check-crash: N passed, N failed, N skipped".
#
# Environment (set by tests/crash.mk):
#   top_srcdir, top_builddir       as for the other tests
#   CRASH_SEED                     seed of the sampled runs (default: 1)
#   CRASH_LARGE_SAMPLE             crash points sampled from the large
#                                  workload (default 300)
#   FUZZ_TIME                      seconds of fuzzing (default 60; 0 = skip)
#   CRASH_CLANG, CRASH_FUZZ_CFLAGS, CRASH_FUZZ_LIBS, CRASH_CORE_SOURCES
#                                  how to build the fuzzer
#   CRASH_STEPS                    steps to run (default: all of
#                                  sim-small sim-large sim-two sim-group sim-kill
#                                  corrupt fuzz faults)
set -u
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
seed=${CRASH_SEED:-1}
large_sample=${CRASH_LARGE_SAMPLE:-300}
fuzz_time=${FUZZ_TIME:-60}
steps=${CRASH_STEPS:-sim-small sim-large sim-two sim-group sim-kill corrupt fuzz faults}
bin=$top_builddir/tests/crash
npass=0 nfail=0 nskip=0
failed=()
t0=$SECONDS

# step NAME CMD...: run and count.  Exit status 77 means skipped.
step ()
{
    local name=$1 rc t=$SECONDS
    shift
    case " $steps " in *" $name "*) ;; *) return 0 ;; esac
    echo "=== check-crash: $name: $*"
    "$@"
    rc=$?
    if [ $rc -eq 0 ]; then
        npass=$((npass + 1))
        echo "=== check-crash: $name: PASS ($((SECONDS - t)) s)"
    elif [ $rc -eq 77 ]; then
        nskip=$((nskip + 1))
        echo "=== check-crash: $name: SKIP"
    else
        nfail=$((nfail + 1))
        failed+=("$name")
        echo "=== check-crash: $name: FAIL (exit $rc, $((SECONDS - t)) s)"
    fi
}

# The libFuzzer target, built with clang from the engine's sources.
fuzz ()
{
    local clang=${CRASH_CLANG:-clang} out=$top_builddir/tests/fuzz
    local exe=$out/fuzz-replay f srcs=()
    if [ "$fuzz_time" = 0 ]; then
        echo "fuzz: FUZZ_TIME=0"
        return 77
    fi
    mkdir -p "$out/corpus" "$out/artifacts"
    if ! echo 'int LLVMFuzzerTestOneInput (const char *d, long n) { return 0; }' |
            "$clang" -x c -fsanitize=fuzzer,address,undefined - \
                -o "$out/probe" >/dev/null 2>&1; then
        echo "fuzz: $clang with libFuzzer (-fsanitize=fuzzer) is not available: skipped"
        return 77
    fi
    rm -f "$out/probe"
    for f in ${CRASH_CORE_SOURCES:-}; do
        case $f in *.c) srcs+=("$top_srcdir/$f") ;; esac
    done
    if [ ${#srcs[@]} -eq 0 ]; then
        echo "fuzz: CRASH_CORE_SOURCES is empty"
        return 1
    fi
    # shellcheck disable=SC2086
    "$clang" -g -O1 -std=gnu11 -pthread \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -I"$top_srcdir/include" -I"$top_srcdir/core" ${CRASH_FUZZ_CFLAGS:-} \
        "$top_srcdir/tests/fuzz/fuzz-replay.c" "${srcs[@]}" \
        -o "$exe" ${CRASH_FUZZ_LIBS:-} -lpthread || return 1
    # Seeds from the source tree (reproducers of bugs found before) are
    # read; new inputs go to the build tree's corpus.  The cache file
    # goes to a directory removed afterwards (a crash skips atexit).
    # libFuzzer's own -timeout misses a unit stuck where its alarm
    # handler cannot report (a lock the report needs), so a watchdog
    # aborts the run past its time: libFuzzer then prints the stack
    # and saves the unit as a crash artifact; SIGKILL 30 s later.
    local dir rc log=$out/fuzz.log limit=$((fuzz_time + 240))
    dir=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo "${TMPDIR:-/tmp}")/pcache-fuzz.XXXXXX")
    PCACHE_FUZZ_DIR=$dir ASAN_OPTIONS=detect_leaks=1 \
        UBSAN_OPTIONS=print_stacktrace=1 \
        timeout -s ABRT -k 30 "$limit" \
        "$exe" -max_total_time="$fuzz_time" -timeout=20 -rss_limit_mb=4096 \
        -print_final_stats=1 -artifact_prefix="$out/artifacts/" \
        "$out/corpus" "$top_srcdir/tests/fuzz/seeds" > "$log" 2>&1
    rc=$?
    grep -a -v '^#[0-9]\|# Uses: \|^###' "$log" | tail -n 40
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "fuzz: still running after $limit s: aborted (exit $rc);" \
             "the unit is in $out/artifacts, the whole log in $log"
        ls -l "$out/artifacts"
    fi
    rm -rf "$dir"
    return "$rc"
}

# The nbdkit fault tests trace every command: keep that in a log and
# show its end only on failure.
faults ()
{
    local log=$top_builddir/tests/crash/test-faults.log rc
    mkdir -p "$top_builddir/tests/crash"
    bash "$top_srcdir/tests/crash/test-faults.sh" > "$log" 2>&1
    rc=$?
    awk '/^check [0-9]/ { n++; bad += $3; err += $5 }
         / blocks rewritten$/ { rw = $1 }
         END { printf "test-faults: %d range checks, %d bad blocks, %d read errors " \
               "(injected), %d blocks rewritten by killed clients\n", n, bad, err, rw }' "$log"
    grep -a -v '^+' "$log" | grep -a 'all fault tests'
    if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
        echo "--- last lines of $log:"
        tail -n 60 "$log"
    elif [ $rc -eq 77 ]; then
        grep -a 'skipped' "$log" | tail -n 1
    fi
    return $rc
}

step sim-small "$bin/crash-sim" --workload small --all --torn
step sim-large "$bin/crash-sim" --workload large --sample "$large_sample" \
    --torn --seed "$seed"
step sim-two "$bin/crash-sim" --workload two --sample 200 --torn --seed "$seed"
step sim-group "$bin/crash-sim" --workload small --sample 300 --torn \
    --group 4 --seed "$seed"
step sim-kill "$bin/crash-sim" --workload small --kill --sample 24 --torn \
    --seed "$seed"
step corrupt "$bin/corrupt" -q
step fuzz fuzz
step faults faults

echo "check-crash: $((SECONDS - t0)) s${failed[*]:+; failed: ${failed[*]}}"
echo "check-crash: $npass passed, $nfail failed, $nskip skipped"
[ $nfail -eq 0 ]
