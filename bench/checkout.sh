#!/usr/bin/env bash
# The checkout benchmark: 32 buyers each going through a whole checkout (create a cart, add 3
# lines, set the email and address, choose shipping, place the order with the `test` card),
# on SQLite and on PostgreSQL, with wrk on loopback: orders/s and each step's p99; each cart
# request type on its own (creating, adding a line, setting the address: requests/s and server
# CPU); then every buyer racing for a hot product with little stock, and a check in the
# database that none was oversold.
#
#   bash bench/checkout.sh
#
# Settings (environment): those of bench/run.sh (duration, connections, warm-up, quiet
# machine, skip build, BENCH_BACKROOM_BIN), and
#   BENCH_CHECKOUT_BACKENDS  which databases, each optionally with Backroom's pool size after a
#                       colon (default "sqlite postgres postgres:64": the default pool of 8 and
#                       one of 64 beside it, where 32 buyers once stalled the default one)
#   BENCH_PG_URL        a PostgreSQL server to make a scratch database on per run
#                       (default postgres://postgres@127.0.0.1:5432/postgres)
#   BENCH_VARIANTS      ordinary variants the carts take in turn, a million units each (default 100)
#   BENCH_HOT_STOCK     units of the hot product                 (default 200)
#   BENCH_HOT_DURATION  how long the buyers race for it (long enough to sell out) (default 15s)
#   BENCH_CARTS         carts the single-request runs spread over (default 2000)
# Raw output goes to bench/results/<UTC time>-checkout/.
set -euo pipefail

export WITH_CEILING=0 BENCH_NAME=checkout BENCH_SKIP_PEER=1
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BACKENDS=${BENCH_CHECKOUT_BACKENDS:-sqlite postgres postgres:64}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
VARIANTS=${BENCH_VARIANTS:-100}
HOT_STOCK=${BENCH_HOT_STOCK:-200}
HOT_DURATION=${BENCH_HOT_DURATION:-15s}
CARTS=${BENCH_CARTS:-2000}
PASSWORD="a bench password 7341"
CHECKOUT=(-s "$BENCH/lua/checkout.lua")
REQUESTS=(-s "$BENCH/lua/requests.lua")
ORDERS="$OUT/orders.tsv"     # backend, run, orders, duration_us, orders_hot, sold_out_add, sold_out_place
STEPS="$OUT/steps.tsv"       # backend, step, count, p50_us, p99_us, max_us, errors
STATUSES="$OUT/statuses.tsv" # backend, run, the answers that were not 2xx (`404=53 ...`)
OVERSELL="$OUT/oversell.tsv" # backend, then the columns of `check_oversell`
: >"$ORDERS"
: >"$STEPS"
: >"$STATUSES"
: >"$OVERSELL"

# Why wrk, with one thread per buyer: a checkout is a chain of requests, each needing the last
# one's answer (the cart id, the shipping method), so the driver keeps state per buyer. wrk
# calls its Lua per thread, so with one connection per thread (-t32 -c32) a thread is a buyer,
# and LuaJIT's ffi reads the clock for each step's own latency. The driver shares the two cores
# with the server, so its CPU counts: creating carts with 32 concurrent requests, wrk took
# about 30 µs per request and aiohttp 3.14 200 µs; in the checkout runs, with a thread per
# buyer, wrk takes 70 to 80 µs, a tenth or less of what the request costs Backroom. Per-step p99
# comes from these timings, and each request type is also run on its own for its requests/s
# and server CPU.
BUYERS=$CONNECTIONS
echo "checkout_wrk_args=-t$BUYERS -c$BUYERS -d$DURATION (warm-up $WARMUP); hot product -t$BUYERS -c$BUYERS -d$HOT_DURATION, $HOT_STOCK units" \
    >>"$OUT/machine.txt"
case " $BACKENDS " in
*" postgres"*)
    command -v psql >/dev/null || die "psql is needed for the PostgreSQL runs (or BENCH_CHECKOUT_BACKENDS=sqlite)"
    echo "postgres=$(psql "$PG_URL" -XAtqc 'SHOW server_version' 2>/dev/null || die "no PostgreSQL at $PG_URL")" \
        >>"$OUT/machine.txt"
    ;;
esac

# Each PostgreSQL run gets a database of its own, dropped at the end whatever happens: the
# servers are stopped first, then the databases dropped, then lib.sh's cleanup runs with the
# script's exit status (errexit is off in here, or a failed step would skip the rest).
DATABASES=()
checkout_cleanup() {
    local status=$1 pid name
    set +e
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    for name in "${DATABASES[@]}"; do
        psql "$PG_URL" -XAtqc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null 2>&1
    done
    (exit "$status")
    cleanup
}
trap 'checkout_cleanup $?' EXIT

# The PostgreSQL server's own CPU, apart from "other" load: each order costs it too, on the
# same two cores. Its processes' time, with that of the backends that have exited (counted in
# their parent's children's time), so that the total only grows.
BACKEND="" DB_KIND=""
extra_ticks() {
    local total=0 pid ticks
    if [ "$DB_KIND" = postgres ]; then
        for pid in $(pgrep -x postgres || true); do
            ticks=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }') || continue
            total=$((total + ${ticks:-0}))
        done
    fi
    echo "$total"
}

# sql QUERY: the rows, fields separated by tabs, from the database of the current run.
sql() {
    if [ "$DB_KIND" = postgres ]; then
        psql "$DB_URL" -XAtq -F $'\t' -v ON_ERROR_STOP=1 -c "$1"
    else
        python3 - "$BR_DATA/backroom.db" "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
for row in db.execute(sys.argv[2]):
    print("\t".join(str(v) for v in row))
EOF
    fi
}

# The hot product, once the race is over: the ledger, the levels and the orders must agree,
# and on hand must never have gone below zero. Appends a line to OVERSELL: stock given, on
# hand, reserved, lowest on hand after a sale (in the ledger's order), sold movements, units
# sold, orders holding it, its order lines, their units, order lines without a sold movement,
# sold movements without an order line.
check_oversell() {
    local v=$1 row
    row=$(sql "SELECT
        (SELECT COALESCE(SUM(quantity), 0) FROM inventory_movements WHERE variant_id = '$v' AND kind <> 'sold'),
        (SELECT COALESCE(SUM(on_hand), 0) FROM inventory_levels WHERE variant_id = '$v'),
        (SELECT COALESCE(SUM(reserved), 0) FROM inventory_levels WHERE variant_id = '$v'),
        (SELECT COALESCE(MIN(running), (SELECT SUM(on_hand) FROM inventory_levels WHERE variant_id = '$v'))
            FROM (SELECT kind, SUM(quantity) OVER (ORDER BY created_at, id) AS running
            FROM inventory_movements WHERE variant_id = '$v') AS ledger WHERE kind = 'sold'),
        (SELECT COUNT(*) FROM inventory_movements WHERE variant_id = '$v' AND kind = 'sold'),
        (SELECT COALESCE(-SUM(quantity), 0) FROM inventory_movements WHERE variant_id = '$v' AND kind = 'sold'),
        (SELECT COUNT(DISTINCT order_id) FROM order_lines WHERE variant_id = '$v'),
        (SELECT COUNT(*) FROM order_lines WHERE variant_id = '$v'),
        (SELECT COALESCE(SUM(quantity), 0) FROM order_lines WHERE variant_id = '$v'),
        (SELECT COUNT(*) FROM order_lines l JOIN orders o ON o.id = l.order_id WHERE l.variant_id = '$v'
            AND NOT EXISTS (SELECT 1 FROM inventory_movements m WHERE m.variant_id = l.variant_id
                AND m.kind = 'sold' AND m.reference = o.cart_id)),
        (SELECT COUNT(*) FROM inventory_movements m WHERE m.variant_id = '$v' AND m.kind = 'sold'
            AND NOT EXISTS (SELECT 1 FROM orders o JOIN order_lines l ON l.order_id = o.id
                WHERE o.cart_id = m.reference AND l.variant_id = m.variant_id))")
    printf '%s\t%s\n' "$BACKEND" "$row" >>"$OVERSELL"
    printf '%s\t%s\n' "$BACKEND" "$row" | awk -F'\t' '{
        ok = $5 >= 0 && $3 >= 0 && $3 == $2 - $7 && $7 <= $2 && $8 == $7 && $6 == $9 && $10 == $7 && $11 == 0 && $12 == 0
        printf "[bench] %s: hot product: %d units, %d sold in %d orders, %d on hand (lowest %d), %d reserved: %s\n", $1, $2,
            $7, $8, $3, $5, $4, ok ? "not oversold" : "OVERSOLD OR INCONSISTENT"
        exit !ok }' >&2 || log "error: $BACKEND: the hot product's ledger, levels and orders disagree; see $OVERSELL"
}

# After each run: does Backroom still write? wrk ends a run by closing its connections with
# requests in flight, which the server then abandons; on SQLite that can leave its one writer
# connection unusable for good (see the Checkout section of docs/BENCHMARKS.md), and every
# later figure would be of failures. The backend's remaining runs are then skipped, and said so.
FAULTS="$OUT/faults.tsv" # backend, what happened
: >"$FAULTS"
check_writes() { # AFTER
    local code
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 30 -H 'Content-Type: application/json' -d '{}' \
        "$BR/api/v1/store/carts" 2>/dev/null || true)
    [ "$code" = 201 ] && return 0
    FAULT="after $1, creating a cart answered ${code:-nothing} within 30 s"
    log "error: $BACKEND: $FAULT; its remaining runs are skipped (see $OUT/backroom-$BACKEND.log)"
    printf '%s\t%s\n' "$BACKEND" "$FAULT" >>"$FAULTS"
}

# Keeps the STATUSES line requests.lua or checkout.lua printed in FILE, for RUN.
read_statuses() { # FILE RUN
    printf '%s\t%s\t%s\n' "$BACKEND" "$2" "$(sed -n 's/^STATUSES *//p' "$1")" >>"$STATUSES"
}

# Reads the STEP and ORDERS lines checkout.lua printed in FILE, for RUN.
read_checkout() { # FILE RUN
    read_statuses "$1" "$2"
    awk -v b="$BACKEND" -v run="$2" -v steps="$STEPS" -v orders="$ORDERS" '
        $1 == "STEP" || $1 == "ORDERS" { delete v; for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        $1 == "STEP" { gsub("_", " ", v["name"]); printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b, v["name"], v["count"],
            v["p50_us"], v["p99_us"], v["max_us"], v["errors"] >>steps }
        $1 == "ORDERS" { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b, run, v["orders"], v["duration_us"], v["orders_hot"],
            v["sold_out_add"], v["sold_out_place"] >>orders }' "$1"
}

for SPEC in $BACKENDS; do
    # SPEC is a database, with the size of Backroom's pool after a colon when it is not the
    # default (database.max_connections): postgres:64.
    DB_KIND=${SPEC%%:*}
    POOL=""
    [ "$SPEC" = "$DB_KIND" ] || POOL=${SPEC#*:}
    BACKEND=$DB_KIND${POOL:+-pool$POOL}
    BR_PORT=$(free_port)
    BR_DATA="$WORK/$BACKEND"
    BR="http://127.0.0.1:$BR_PORT"
    BR_ENV=(BACKROOM_CONFIG="$WORK/none.toml" BACKROOM_LISTEN="127.0.0.1:$BR_PORT" BACKROOM_DATA_DIR="$BR_DATA"
        BACKROOM_LOG__LEVEL=warn)
    [ -z "$POOL" ] || BR_ENV+=(BACKROOM_DATABASE__MAX_CONNECTIONS="$POOL")
    case $DB_KIND in
    sqlite) DB_URL="" ;;
    postgres)
        name="br_bench_checkout_$(date +%s)_$$"
        psql "$PG_URL" -XAtqc "CREATE DATABASE \"$name\"" >/dev/null
        DATABASES+=("$name")
        DB_URL="${PG_URL%/*}/$name"
        BR_ENV+=(BACKROOM_DATABASE_URL="$DB_URL")
        ;;
    *) die "unknown backend $SPEC (sqlite or postgres, optionally :POOL)" ;;
    esac
    FAULT=""
    log "$BACKEND: a staff account, then the demo shop (240 products, the test card provider on)"
    printf '%s\n' "$PASSWORD" | (cd "$WORK" && env "${BR_ENV[@]}" "$BACKROOM_BIN" admin create \
        --email staff@example.com --name Bench) >>"$OUT/backroom-$BACKEND.log" 2>&1
    (cd "$WORK" && exec env "${BR_ENV[@]}" "$BACKROOM_BIN" serve --demo) >>"$OUT/backroom-$BACKEND.log" 2>&1 &
    BR_PID=$!
    PIDS+=("$BR_PID")
    wait_ready "$BR/health/ready" "$BR_PID"
    sleep "$IDLE_SECS"
    printf '%s\t%s\n' "$BACKEND" "$(status_kb "$BR_PID" VmRSS)" >>"$MEMORY"

    TOKEN=$(curl -fsS -H 'Content-Type: application/json' \
        -d "{\"email\":\"staff@example.com\",\"password\":\"$PASSWORD\"}" "$BR/api/v1/admin/auth/sessions" | json_field token)
    log "$BACKEND: stocking $VARIANTS variants, $HOT_STOCK units of the hot one, $CARTS carts"
    SETUP="$WORK/$BACKEND-setup"
    mkdir -p "$SETUP"
    python3 "$BENCH/checkout_setup.py" "$BR" "$TOKEN" "$VARIANTS" "$HOT_STOCK" "$CARTS" "$SETUP"
    HOT=$(cat "$SETUP/hot.txt")
    export BENCH_VARIANTS_FILE="$SETUP/variants.txt"
    echo "POST /api/v1/store/carts {}" >"$SETUP/create.txt"
    awk '{ printf "POST /api/v1/store/carts/%s/lines {\"variant_id\":\"%s\",\"quantity\":1}\n", $1, $2 }' \
        "$SETUP/carts.txt" >"$SETUP/add.txt"
    ADDRESS='"shipping_address":{"first_name":"Ana","last_name":"Silva","line1":"5 rue Saint-Denis","city":"Paris","postcode":"75001","country":"FR"}'
    awk -v address="$ADDRESS" '{ printf "PATCH /api/v1/store/carts/%s {\"email\":\"buyer-%d@example.com\",%s}\n", $1, NR, address }' \
        "$SETUP/carts.txt" >"$SETUP/address.txt"

    if [ -z "$FAULT" ]; then
        THREADS=$BUYERS bench checkout "$BACKEND" "checkout, $BUYERS buyers" "$BR_PID" "$BR" "${CHECKOUT[@]}"
        read_checkout "$LAST_RAW" checkout
        check_writes "the checkout run"
    fi
    # Each request type alone, spread over the carts: its requests/s, and its server CPU,
    # which tells where an order's CPU goes (placing the order is what remains).
    for run in "create:create cart" "add:add to cart" "address:set address"; do
        [ -z "$FAULT" ] || break
        BENCH_REQUESTS_FILE="$SETUP/${run%%:*}.txt" bench cart "$BACKEND" "${run#*:}" "$BR_PID" "$BR" "${REQUESTS[@]}"
        read_statuses "$LAST_RAW" "${run#*:}"
        check_writes "the ${run#*:} run"
    done

    # The race: every buyer's third line is the hot product, until it is sold out; then
    # adding it is refused. No warm-up: the stock would be gone before the measure.
    if [ -z "$FAULT" ]; then
        wait_quiet
        log "$BACKEND: $BUYERS buyers racing for $HOT_STOCK units of the hot product ($HOT_DURATION)"
        BENCH_HOT_VARIANT=$HOT wrk -t"$BUYERS" -c"$BUYERS" -d"$HOT_DURATION" --timeout 10s "${CHECKOUT[@]}" "$BR" \
            >"$OUT/wrk-$BACKEND-hot.txt" &
        wrk_pid=$!
        PIDS+=("$wrk_pid")
        wait "$wrk_pid" || die "wrk failed; see $OUT/wrk-$BACKEND-hot.txt"
        forget_pid "$wrk_pid"
        read_checkout "$OUT/wrk-$BACKEND-hot.txt" hot
        sleep 1 # requests wrk left in flight finish
        check_oversell "$HOT"
    fi

    sleep "$IDLE_SECS"
    printf '%s-after\t%s\n' "$BACKEND" "$(status_kb "$BR_PID" VmRSS)" >>"$MEMORY"
    stop_pid "$BR_PID"
done
BACKEND="" DB_KIND=""
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

# ---------------------------------------------------------------- the report
awk -F'\t' -v machine="$OUT/machine.txt" -v memory="$MEMORY" -v orders="$ORDERS" -v steps="$STEPS" \
    -v oversell="$OVERSELL" -v faults="$FAULTS" -v statuses="$STATUSES" -f "$BENCH/checkout.awk" "$RESULTS" | tee "$OUT/summary.md"
log "raw results in $OUT"
