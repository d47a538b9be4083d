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
#   BENCH_CHECKOUT_BACKENDS  which databases                    (default "sqlite postgres")
#   BENCH_PG_URL        a PostgreSQL server to make a scratch database on per run
#                       (default postgres://postgres@127.0.0.1:5432/postgres)
#   BENCH_VARIANTS      ordinary variants the carts take in turn, a million units each (default 100)
#   BENCH_HOT_STOCK     units of the hot product                 (default 200)
#   BENCH_HOT_DURATION  how long the buyers race for it           (default 5s)
#   BENCH_CARTS         carts the single-request runs spread over (default 2000)
# Raw output goes to bench/results/<UTC time>-checkout/.
set -euo pipefail

export WITH_CEILING=0 BENCH_NAME=checkout BENCH_SKIP_PEER=1
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BACKENDS=${BENCH_CHECKOUT_BACKENDS:-sqlite postgres}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
VARIANTS=${BENCH_VARIANTS:-100}
HOT_STOCK=${BENCH_HOT_STOCK:-200}
HOT_DURATION=${BENCH_HOT_DURATION:-5s}
CARTS=${BENCH_CARTS:-2000}
PASSWORD="a bench password 7341"
CHECKOUT=(-s "$BENCH/lua/checkout.lua")
REQUESTS=(-s "$BENCH/lua/requests.lua")
ORDERS="$OUT/orders.tsv"     # backend, run, orders, duration_us, orders_hot, sold_out_add, sold_out_place
STEPS="$OUT/steps.tsv"       # backend, step, count, p50_us, p99_us, max_us, errors
OVERSELL="$OUT/oversell.tsv" # backend, then the columns of `check_oversell`
: >"$ORDERS"
: >"$STEPS"
: >"$OVERSELL"

# Why wrk and one thread per buyer: a checkout is a chain of requests, each needing the last
# one's answer (the cart id, the shipping method), so the driver keeps state per buyer. wrk
# calls its Lua per thread, so with one connection per thread (-t32 -c32) a thread is a buyer;
# LuaJIT reads the clock for each step's latency. Tried first on this machine, wrk took about
# a twentieth of the server's CPU per request (the `wrk CPU` column); a Python asyncio driver
# takes several hundred µs per request, as much as a cart request costs the server, which
# would halve what the two cores can give Backroom.
BUYERS=$CONNECTIONS
echo "checkout_wrk_args=-t$BUYERS -c$BUYERS -d$DURATION (warm-up $WARMUP); hot product -t$BUYERS -c$BUYERS -d$HOT_DURATION, $HOT_STOCK units" \
    >>"$OUT/machine.txt"
case " $BACKENDS " in
*" postgres "*)
    command -v psql >/dev/null || die "psql is needed for the PostgreSQL runs (or BENCH_CHECKOUT_BACKENDS=sqlite)"
    echo "postgres=$(psql "$PG_URL" -XAtqc 'SHOW server_version' 2>/dev/null || die "no PostgreSQL at $PG_URL")" \
        >>"$OUT/machine.txt"
    ;;
esac

# Each PostgreSQL run gets a database of its own, dropped at the end whatever happens.
DATABASES=()
drop_databases() {
    local status=$? name
    for name in "${DATABASES[@]}"; do
        psql "$PG_URL" -XAtqc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
    return "$status"
}
trap 'drop_databases; cleanup' EXIT

# The PostgreSQL server's own CPU, apart from "other" load: each order costs it too, on the
# same two cores. Backends that exit during a run are missed; Backroom's pool keeps its own.
BACKEND=""
extra_ticks() {
    local total=0 pid ticks
    if [ "$BACKEND" = postgres ]; then
        for pid in $(pgrep -x postgres || true); do
            ticks=$(process_ticks "$pid" 2>/dev/null) && total=$((total + ticks))
        done
    fi
    echo "$total"
}

# sql QUERY: the rows, fields separated by tabs, from the database of the current run.
sql() {
    if [ "$BACKEND" = postgres ]; then
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
# and on hand must never have gone below zero. Appends a line to OVERSELL:
# stock given, on hand, reserved, lowest on hand in the ledger's order, sold movements, units
# sold, orders holding it, its order lines, their units, order lines without a sold movement,
# sold movements without an order line.
check_oversell() {
    local v=$1 row
    row=$(sql "SELECT
        (SELECT COALESCE(SUM(quantity), 0) FROM inventory_movements WHERE variant_id = '$v' AND kind <> 'sold'),
        (SELECT COALESCE(SUM(on_hand), 0) FROM inventory_levels WHERE variant_id = '$v'),
        (SELECT COALESCE(SUM(reserved), 0) FROM inventory_levels WHERE variant_id = '$v'),
        (SELECT COALESCE(MIN(running), 0) FROM (SELECT SUM(quantity) OVER (ORDER BY created_at, id) AS running
            FROM inventory_movements WHERE variant_id = '$v') AS ledger),
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

# Reads the STEP and ORDERS lines checkout.lua printed in FILE, for RUN.
read_checkout() { # FILE RUN
    awk -v b="$BACKEND" -v run="$2" -v steps="$STEPS" -v orders="$ORDERS" '
        $1 == "STEP" || $1 == "ORDERS" { delete v; for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        $1 == "STEP" { gsub("_", " ", v["name"]); printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b, v["name"], v["count"],
            v["p50_us"], v["p99_us"], v["max_us"], v["errors"] >>steps }
        $1 == "ORDERS" { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b, run, v["orders"], v["duration_us"], v["orders_hot"],
            v["sold_out_add"], v["sold_out_place"] >>orders }' "$1"
}

for BACKEND in $BACKENDS; do
    BR_PORT=$(free_port)
    BR_DATA="$WORK/$BACKEND"
    BR="http://127.0.0.1:$BR_PORT"
    BR_ENV=(BACKROOM_CONFIG="$WORK/none.toml" BACKROOM_LISTEN="127.0.0.1:$BR_PORT" BACKROOM_DATA_DIR="$BR_DATA"
        BACKROOM_LOG__LEVEL=warn)
    case $BACKEND in
    sqlite) DB_URL="" ;;
    postgres)
        name="br_bench_checkout_$(date +%s)_$$"
        psql "$PG_URL" -XAtqc "CREATE DATABASE \"$name\"" >/dev/null
        DATABASES+=("$name")
        DB_URL="${PG_URL%/*}/$name"
        BR_ENV+=(BACKROOM_DATABASE_URL="$DB_URL")
        ;;
    *) die "unknown backend $BACKEND (sqlite or postgres)" ;;
    esac
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
    mkdir -p "$WORK/$BACKEND-setup"
    python3 "$BENCH/checkout_setup.py" "$BR" "$TOKEN" "$VARIANTS" "$HOT_STOCK" "$CARTS" "$WORK/$BACKEND-setup"
    SETUP="$WORK/$BACKEND-setup"
    HOT=$(cat "$SETUP/hot.txt")
    export BENCH_VARIANTS_FILE="$SETUP/variants.txt"

    THREADS=$BUYERS bench checkout "$BACKEND" "checkout, $BUYERS buyers" "$BR_PID" "$BR" "${CHECKOUT[@]}"
    read_checkout "$LAST_RAW" checkout

    # Each request type alone, spread over the carts: its requests/s, and its server CPU,
    # which tells where an order's CPU goes (placing the order is what remains).
    echo "POST /api/v1/store/carts {}" >"$SETUP/create.txt"
    awk '{ printf "POST /api/v1/store/carts/%s/lines {\"variant_id\":\"%s\",\"quantity\":1}\n", $1, $2 }' \
        "$SETUP/carts.txt" >"$SETUP/add.txt"
    awk '{ printf "PATCH /api/v1/store/carts/%s {\"email\":\"buyer@example.com\",\"shipping_address\":{\"first_name\":\"Ana\",\"last_name\":\"Silva\",\"line1\":\"5 rue Saint-Denis\",\"city\":\"Paris\",\"postcode\":\"75001\",\"country\":\"FR\"}}\n", $1 }' \
        "$SETUP/carts.txt" >"$SETUP/address.txt"
    BENCH_REQUESTS_FILE="$SETUP/create.txt" bench cart "$BACKEND" "create cart" "$BR_PID" "$BR" "${REQUESTS[@]}"
    BENCH_REQUESTS_FILE="$SETUP/add.txt" bench cart "$BACKEND" "add to cart" "$BR_PID" "$BR" "${REQUESTS[@]}"
    BENCH_REQUESTS_FILE="$SETUP/address.txt" bench cart "$BACKEND" "set address" "$BR_PID" "$BR" "${REQUESTS[@]}"

    # The race: every buyer's third line is the hot product, until it is sold out. No
    # warm-up: the race is over in a second or two.
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

    sleep "$IDLE_SECS"
    printf '%s-after\t%s\n' "$BACKEND" "$(status_kb "$BR_PID" VmRSS)" >>"$MEMORY"
    stop_pid "$BR_PID"
done
BACKEND=""
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

# ---------------------------------------------------------------- the report
awk -F'\t' -v machine="$OUT/machine.txt" -v memory="$MEMORY" -v orders="$ORDERS" -v steps="$STEPS" \
    -v oversell="$OVERSELL" -f "$BENCH/checkout.awk" "$RESULTS" | tee "$OUT/summary.md"
log "raw results in $OUT"
