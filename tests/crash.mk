# Crash-consistency and fault-injection rig: `make check-crash`.
# (Filled in by the crash rig; included from Makefile.am.)
check-crash:
	@echo "check-crash: nothing yet"
.PHONY: check-crash
