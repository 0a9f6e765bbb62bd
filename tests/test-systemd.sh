#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# systemd/pcache@.service: its ExecStart, expanded the way systemd does
# with a conf in the format of systemd/example.conf, serves the cache;
# SIGTERM (how systemd stops it) drains it and exits 0.  No systemd is
# needed; systemd-analyze verify checks the units where it exists.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires_pcachectl
tmpdir

unit="${top_srcdir:-.}/systemd/pcache@.service"
socket_unit="${top_srcdir:-.}/systemd/pcache@.socket"

if command -v systemd-analyze >/dev/null; then
    # --man=no: the man pages need not be installed.
    systemd-analyze verify --man=no "$unit" "$socket_unit"
fi

# The instance's conf, as /etc/pcache/NAME.conf would be.
truncate -s 64M "$tmp/disk"
cat >"$tmp/test.conf" <<CONF
# a comment
LISTEN="-U $tmp/nbd.sock"
NBDKIT_OPTS="-P $tmp/pid"
PLUGIN="file file=$tmp/disk"
PCACHE="pcache-dev=$tmp/cache pcache-size=256M pcache-drain=true pcache-control=$tmp/ctl"
CONF

# expand_exec_start CONF: set cmd to ExecStart as systemd runs it with
# EnvironmentFile=CONF: \$VAR splits the variable into words.
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[ -n "$exec_start" ]
expand_exec_start ()
{
    local w v words split
    # shellcheck disable=SC1090
    source "$1"
    read -r -a words <<<"$exec_start"
    cmd=()
    for w in "${words[@]}"; do
        case $w in
            '$'[A-Z]*)
                v=${w#\$}
                read -r -a split <<<"${!v}"
                cmd+=("${split[@]}") ;;
            # The filter of this build, not an installed one.
            --filter=pcache) cmd+=("--filter=$PCACHE_FILTER") ;;
            *) cmd+=("$w") ;;
        esac
    done
}
expand_exec_start "$tmp/test.conf"
# It must run in the foreground: systemd supervises the process.
[ "${cmd[0]}" = /usr/bin/nbdkit ]
[ "${cmd[1]}" = -f ]
printf '%s\n' "${cmd[@]}"

"${cmd[@]}" &
pid=$!
echo "$pid" >"$tmp/server.pid"
cleanup_fn kill_nbdkit "$tmp/server.pid"
wait_for_socket "$tmp/nbd.sock" "$pid"

nbdsh -u "nbd+unix://?socket=$tmp/nbd.sock" -c '
assert h.get_size() == 64 * 1024 * 1024
h.pwrite(b"S" * 65536, 1048576)
h.flush()
'
# Still dirty: the drain at SIGTERM has something to do.
"$pcachectl" stats --pretty "$tmp/ctl" | grep -E '"dirty_bytes": [1-9]'

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
rm -f "$tmp/server.pid"
echo "nbdkit exited with $rc"
[ "$rc" -eq 0 ]

# The drain wrote everything back and left no dirty data.
python3 - "$tmp/disk" <<'PY'
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(1048576)
    assert f.read(65536) == b"S" * 65536
print("written back")
PY
"$pcachectl" info "$tmp/cache" | grep -E '^dirty keys: +0$'

# Socket activation (pcache@.socket): the conf's LISTEN is empty and
# the listening socket comes from systemd (LISTEN_FDS), here from
# systemd-socket-activate.
if command -v systemd-socket-activate >/dev/null; then
    grep -qx 'ListenStream=/run/pcache/%i.sock' "$socket_unit"
    sed 's/^LISTEN=.*/LISTEN=""/' "$tmp/test.conf" >"$tmp/sa.conf"
    LISTEN= NBDKIT_OPTS= PLUGIN= PCACHE=
    expand_exec_start "$tmp/sa.conf"
    # It passes on only the environment it is told to: the sanitizer
    # build's settings (see scripts/check) must reach nbdkit too.
    env_args=()
    for v in ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS LD_PRELOAD; do
        if [ -n "${!v+set}" ]; then env_args+=(-E "$v"); fi
    done
    systemd-socket-activate "${env_args[@]}" -l "$tmp/sa.sock" "${cmd[@]}" &
    pid=$!
    echo "$pid" >"$tmp/server.pid"
    wait_for_socket "$tmp/sa.sock" "$pid"
    nbdsh -u "nbd+unix://?socket=$tmp/sa.sock" -c '
assert h.pread(65536, 1048576) == b"S" * 65536
'
    kill -TERM "$pid"
    rc=0
    wait "$pid" || rc=$?
    rm -f "$tmp/server.pid"
    [ "$rc" -eq 0 ]
fi
