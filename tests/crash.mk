# SPDX-License-Identifier: BSD-3-Clause
# Crash-consistency and fault-injection rig: `make check-crash`.
# Included from Makefile.am.
#
#   crash-sim    power-loss simulator: every persist point of a small
#                workload (cut and torn), a sample of a large one, a
#                sample of one with two exports (namespaces), and a
#                sample with a real _exit at the crash point
#   corrupt      damaged media: named cases and single-byte sweeps
#   fuzz-replay  libFuzzer target on replay (built with clang when it
#                has libFuzzer, else skipped)
#   test-faults  nbdkit: backend errors and delays below pcache, clients
#                killed mid-request, many connections at once
#
# Knobs: make check-crash CRASH_SEED=7 CRASH_LARGE_SAMPLE=500 FUZZ_TIME=120
#        CRASH_STEPS='sim-small corrupt'
# Longer runs: scripts/soak.

CRASH_BINS = tests/crash/crash-sim tests/crash/corrupt
check_PROGRAMS += $(CRASH_BINS)

# The test library (tests/unit/testutil.h): backends, block contents,
# log capture, files and the PRNG.
CRASH_CPPFLAGS = $(CORE_INCLUDES) -I$(srcdir)/tests/unit
CRASH_LDADD = \
	tests/unit/libtestutil.la \
	core/libpcachecore.la \
	$(LIBPMEM2_LIBS) \
	$(LIBISAL_LIBS) \
	-lpthread

tests_crash_crash_sim_SOURCES = tests/crash/crash-sim.c
tests_crash_crash_sim_CPPFLAGS = $(CRASH_CPPFLAGS)
tests_crash_crash_sim_LDADD = $(CRASH_LDADD)
tests_crash_corrupt_SOURCES = tests/crash/corrupt.c
tests_crash_corrupt_CPPFLAGS = $(CRASH_CPPFLAGS)
tests_crash_corrupt_LDADD = $(CRASH_LDADD)

EXTRA_DIST += \
	tests/crash/README \
	tests/crash/check-crash.sh \
	tests/crash/test-faults.sh \
	tests/crash/faults.py \
	tests/fuzz/fuzz-replay.c \
	tests/fuzz/seeds \
	scripts/soak

CLANG = clang
CRASH_SEED = 1
CRASH_LARGE_SAMPLE = 300
FUZZ_TIME = 60
CRASH_STEPS = sim-small sim-large sim-two sim-group sim-kill corrupt fuzz faults

check-crash: $(CRASH_BINS) $(filter_LTLIBRARIES)
	@$(AM_TESTS_ENVIRONMENT) \
	CRASH_SEED='$(CRASH_SEED)'; export CRASH_SEED; \
	CRASH_LARGE_SAMPLE='$(CRASH_LARGE_SAMPLE)'; export CRASH_LARGE_SAMPLE; \
	FUZZ_TIME='$(FUZZ_TIME)'; export FUZZ_TIME; \
	CRASH_STEPS='$(CRASH_STEPS)'; export CRASH_STEPS; \
	CRASH_CLANG='$(CLANG)'; export CRASH_CLANG; \
	CRASH_FUZZ_CFLAGS='$(LIBPMEM2_CFLAGS) $(LIBISAL_CFLAGS)'; \
	export CRASH_FUZZ_CFLAGS; \
	CRASH_FUZZ_LIBS='$(LIBPMEM2_LIBS) $(LIBISAL_LIBS)'; \
	export CRASH_FUZZ_LIBS; \
	CRASH_CORE_SOURCES='$(core_libpcachecore_la_SOURCES)'; \
	export CRASH_CORE_SOURCES; \
	$(BASH_PROG) $(srcdir)/tests/crash/check-crash.sh

# What check-crash leaves in the build tree (the fuzzer and its corpus).
clean-crash:
	-rm -rf tests/fuzz/core tests/fuzz/corpus tests/fuzz/artifacts \
	  tests/fuzz/fuzz-replay tests/fuzz/probe

.PHONY: check-crash clean-crash
