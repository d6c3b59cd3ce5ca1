#!/usr/bin/env bash
# System calls per request of RESP (Redis protocol) servers driven by
# redis-benchmark: curio and tokio current_thread servers of the same shape
# (src/bin/resp_server.rs) and redis-server itself. Each server's system calls
# are counted with `perf stat` on the syscall tracepoints (attached to the
# server's process while redis-benchmark runs with 50 clients, unpipelined).
#
#   cargo build --release -p curio-benches --bin resp_server
#   benches/resp_syscalls.sh                   # N=100000 requests per test
#   N=20000 TESTS=ping,get SERVERS="curio tokio" benches/resp_syscalls.sh
#
# Needs perf (Debian: linux-perf; the tracepoints need tracefs mounted at
# /sys/kernel/tracing and root or perf_event_paranoid <= -1), redis-benchmark
# and redis-server (redis-tools, redis-server). `strace -f -c` counts the same
# calls but slows the server so much that clients' next requests are already
# waiting when it reads again, which hides the extra read this measures.
#
# Prints, per server: requests, system calls per request, and reads (read +
# recvfrom), writes (write + sendto) and epoll_wait calls per request.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
CLIENTS=${CLIENTS:-50}
TESTS=${TESTS:-ping,set,get}
SERVERS=${SERVERS:-curio tokio redis}
BIN=${BIN:-target/release/resp_server}
PORT=${PORT:-6391}
OUT=$(mktemp -d)
EVENTS=raw_syscalls:sys_enter
for c in read recvfrom write sendto epoll_wait; do
    EVENTS+=",syscalls:sys_enter_$c"
done

printf '%-8s %10s %10s %10s %10s %10s\n' server requests "calls/req" "reads/req" "writes/req" "epoll/req"
for server in $SERVERS; do
    case $server in
        redis) cmd=(redis-server --port "$PORT" --save '' --appendonly no --bind 127.0.0.1 --protected-mode no --loglevel warning) ;;
        *) cmd=("$BIN" "$server" "$PORT") ;;
    esac
    "${cmd[@]}" >"$OUT/$server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    perf stat -x, -o "$OUT/$server.perf" -e "$EVENTS" -p "$pid" &
    perf=$!
    sleep 0.2
    redis-benchmark -p "$PORT" -c "$CLIENTS" -n "$N" -t "$TESTS" -q >"$OUT/$server.bench" 2>&1
    kill -INT "$perf"
    wait "$perf" || true
    kill -TERM "$pid"
    wait "$pid" || true
    # `-t ping` runs two tests (inline and multi-bulk): count the tests that ran.
    ntests=$(tr '\r' '\n' <"$OUT/$server.bench" | grep -c 'requests per second,')
    awk -F, -v req="$((N * ntests))" -v name="$server" '
        $3 == "raw_syscalls:sys_enter" { total = $1 }
        $3 ~ /sys_enter_(read|recvfrom)$/ { reads += $1 }
        $3 ~ /sys_enter_(write|sendto)$/ { writes += $1 }
        $3 ~ /sys_enter_epoll_wait$/ { epoll += $1 }
        END { printf "%-8s %10d %10.3f %10.3f %10.3f %10.3f\n", name, req, total / req, reads / req, writes / req, epoll / req }
    ' "$OUT/$server.perf"
done
echo "(perf counts and redis-benchmark output in $OUT)"
