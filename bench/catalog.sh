#!/usr/bin/env bash
# The catalog benchmark: 10,000 products of three variants each (two for one-size goods),
# imported into Backroom from CSV (timed) and loaded into PocketBase; then shoppers' reads of
# both with wrk on loopback, in the same run: a list page, a product, a search, a category.
#
#   bash bench/catalog.sh
#
# Settings (environment): those of bench/run.sh (duration, connections, warm-up, quiet
# machine, PocketBase version, skip build or peer), and
#   BENCH_PRODUCTS      products in the catalog                  (default 10000)
# Raw output goes to bench/results/<UTC time>-catalog/.
set -euo pipefail

export WITH_CEILING=0 BENCH_NAME=catalog
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PRODUCTS=${BENCH_PRODUCTS:-10000}
PATHS=(-s "$BENCH/lua/paths.lua")
IMPORTS="$OUT/import.tsv" # server, products, rows, ms
: >"$IMPORTS"

# ---------------------------------------------------------------- Backroom: the data
BR_PORT=$(free_port)
BR_DATA="$WORK/backroom"
backroom_cmd() {
    (cd "$WORK" && env BACKROOM_CONFIG="$WORK/none.toml" BACKROOM_LISTEN="127.0.0.1:$BR_PORT" \
        BACKROOM_DATA_DIR="$BR_DATA" BACKROOM_LOG__LEVEL=warn "$BACKROOM_BIN" "$@")
}
log "Backroom: writing $PRODUCTS demo products as CSV"
backroom_cmd demo --products "$PRODUCTS" --csv "$WORK/catalog.csv" 2>>"$OUT/backroom.log"
ROWS=$(($(wc -l <"$WORK/catalog.csv") - 1))
wait_quiet
log "Backroom: importing $PRODUCTS products ($ROWS variant rows) into SQLite"
t0=$(now_ns)
backroom_cmd import products "$WORK/catalog.csv" 2>>"$OUT/backroom.log"
t1=$(now_ns)
printf 'backroom\t%s\t%s\t%s\n' "$PRODUCTS" "$ROWS" $(((t1 - t0) / 1000000)) >>"$IMPORTS"
log "Backroom: imported in $(((t1 - t0) / 1000000)) ms"

(cd "$WORK" && exec env BACKROOM_CONFIG="$WORK/none.toml" BACKROOM_LISTEN="127.0.0.1:$BR_PORT" \
    BACKROOM_DATA_DIR="$BR_DATA" BACKROOM_LOG__LEVEL=warn "$BACKROOM_BIN" serve) >>"$OUT/backroom.log" 2>&1 &
BR_PID=$!
PIDS+=("$BR_PID")
BR="http://127.0.0.1:$BR_PORT"
wait_ready "$BR/health/ready" "$BR_PID"
total=$(curl -fsS "$BR/api/v1/store/products?limit=1" | json_field total)
[ "$total" = "$PRODUCTS" ] || die "Backroom lists $total products, not $PRODUCTS"
sleep "$IDLE_SECS"
printf 'backroom\t%s\n' "$(status_kb "$BR_PID" VmRSS)" >>"$MEMORY"

# The same 2,000 products for both servers' single reads, and 300 different searches: words
# of titles, prefixes as typed, and words with a typo.
python3 - "$WORK/catalog.csv" "$WORK" <<'EOF'
import csv, random, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")))
handles = sorted({r["handle"] for r in rows})
random.Random(7).shuffle(handles)
open(sys.argv[2] + "/handles.txt", "w").write("\n".join(handles[:2000]) + "\n")
open(sys.argv[2] + "/all-handles.txt", "w").write("\n".join(handles) + "\n")
words = sorted({w.lower() for r in rows if r["title"] for w in r["title"].split() if len(w) > 3})
rng = random.Random(11)
queries = []
for word in words:
    queries += [word, word[:3], word[:2] + word[3:2:-1] + word[2] + word[4:] if len(word) > 5 else word[:-1]]
rng.shuffle(queries)
open(sys.argv[2] + "/queries.txt", "w").write("\n".join(queries[:300]) + "\n")
# The same queries with every page size: 30,000 different requests, three times what the
# shelf keeps rendered, taken in turn, so that each one is searched afresh.
fresh = [f"{q}&limit={n}" for q in queries[:300] for n in range(1, 101)]
rng.shuffle(fresh)
open(sys.argv[2] + "/fresh-queries.txt", "w").write("\n".join(fresh) + "\n")
EOF
sed 's|^|/api/v1/store/products/|' "$WORK/handles.txt" >"$WORK/backroom-handles.txt"
sed 's|^|/api/v1/store/search?limit=20\&q=|' "$WORK/queries.txt" >"$WORK/backroom-searches.txt"
sed 's|^|/api/v1/store/search?q=|' "$WORK/fresh-queries.txt" >"$WORK/backroom-fresh-searches.txt"
for path in "$(head -n1 "$WORK/backroom-handles.txt")" "$(head -n1 "$WORK/backroom-searches.txt")"; do
    curl -fsS -o /dev/null "$BR$path" || die "Backroom does not answer $path"
done

bench catalog backroom "list 20" "$BR_PID" "$BR/api/v1/store/products?limit=20" "${REPORT[@]}"
BENCH_PATHS_FILE="$WORK/backroom-handles.txt" bench catalog backroom "product by handle (2,000 products)" "$BR_PID" "$BR" "${PATHS[@]}"
bench catalog backroom "search 'cotton', with facets" "$BR_PID" "$BR/api/v1/store/search?limit=20&q=cotton" "${REPORT[@]}"
BENCH_PATHS_FILE="$WORK/backroom-searches.txt" bench catalog backroom "search, 300 queries, with facets" "$BR_PID" "$BR" "${PATHS[@]}"
BENCH_PATHS_FILE="$WORK/backroom-fresh-searches.txt" bench catalog backroom "search, 30,000 queries, none cached" "$BR_PID" "$BR" "${PATHS[@]}"
bench catalog backroom "category t-shirts, 20" "$BR_PID" "$BR/api/v1/store/products?limit=20&category=t-shirts" "${REPORT[@]}"
bench catalog backroom "category clothing (and below), 20" "$BR_PID" "$BR/api/v1/store/products?limit=20&category=clothing" "${REPORT[@]}"

# The storefront's HTML pages of the same catalog, asked for as browsers do (compressed).
# Warm: 200 product pages, which the page cache holds. Cold: all the products, and the
# category's pages in every order, with and without the stock filter: more than the page
# cache keeps, so most answers are rendered afresh.
BROWSER=(-H "Accept-Encoding: br, gzip" -H "Accept: text/html")
head -n 200 "$WORK/handles.txt" | sed 's|^|/products/|' >"$WORK/pages-warm.txt"
sed 's|^|/products/|' "$WORK/all-handles.txt" >"$WORK/pages-cold.txt"
in_clothing=$(curl -fsS "$BR/api/v1/store/products?limit=1&category=clothing" | json_field total)
available=$(curl -fsS "$BR/api/v1/store/products?limit=1&category=clothing&available=true" | json_field total)
python3 - "$in_clothing" "$available" >"$WORK/category-pages.txt" <<'EOF'
import random, sys
pages = lambda total: min((int(total) + 23) // 24, 400)
paths = [f"/categories/clothing?sort={sort}&page={page}{stock}" for sort in ("newest", "price", "-price", "title")
         for stock, total in (("", sys.argv[1]), ("&available=true", sys.argv[2])) for page in range(1, pages(total) + 1)]
random.Random(5).shuffle(paths)
print("\n".join(paths))
EOF
curl -fsS -o /dev/null -H 'Accept: text/html' "$BR$(head -n1 "$WORK/pages-warm.txt")" || die "Backroom does not answer a product page"
BENCH_PATHS_FILE="$WORK/pages-warm.txt" bench catalog backroom "product page HTML, 200 pages (warm)" "$BR_PID" "$BR" "${PATHS[@]}" "${BROWSER[@]}"
BENCH_PATHS_FILE="$WORK/pages-cold.txt" bench catalog backroom "product page HTML, $PRODUCTS pages (cold)" "$BR_PID" "$BR" "${PATHS[@]}" "${BROWSER[@]}"
bench catalog backroom "category page HTML (warm)" "$BR_PID" "$BR/categories/clothing" "${REPORT[@]}" "${BROWSER[@]}"
BENCH_PATHS_FILE="$WORK/category-pages.txt" bench catalog backroom "category page HTML, $(wc -l <"$WORK/category-pages.txt") orders and pages (cold)" "$BR_PID" "$BR" "${PATHS[@]}" "${BROWSER[@]}"
sleep "$IDLE_SECS"
printf 'backroom-after\t%s\n' "$(status_kb "$BR_PID" VmRSS)" >>"$MEMORY"
stop_pid "$BR_PID"

# ---------------------------------------------------------------- PocketBase
if [ -n "$PB_BIN" ]; then
    PB_PORT=$(free_port)
    PB_DATA="$WORK/pocketbase"
    PB_ADMIN="admin@example.com"
    PB_PASSWORD="a bench password 7341"
    "$PB_BIN" superuser upsert "$PB_ADMIN" "$PB_PASSWORD" --dir "$PB_DATA" >>"$OUT/pocketbase.log" 2>&1
    (cd "$WORK" && exec "$PB_BIN" serve --dir "$PB_DATA" --http "127.0.0.1:$PB_PORT") >>"$OUT/pocketbase.log" 2>&1 &
    PB_PID=$!
    PIDS+=("$PB_PID")
    PB="http://127.0.0.1:$PB_PORT"
    wait_ready "$PB/api/health" "$PB_PID"
    ADMIN_TOKEN=$(curl -fsS -H 'Content-Type: application/json' \
        -d "{\"identity\":\"$PB_ADMIN\",\"password\":\"$PB_PASSWORD\"}" \
        "$PB/api/collections/_superusers/auth-with-password" | json_field token)
    wait_quiet
    log "PocketBase: loading $PRODUCTS products (batches of 500)"
    t0=$(now_ns)
    python3 "$BENCH/pocketbase_load.py" "$PB" "$ADMIN_TOKEN" "$WORK/catalog.csv" >"$WORK/pb-ids.txt"
    t1=$(now_ns)
    printf 'pocketbase\t%s\t%s\t%s\n' "$PRODUCTS" "$ROWS" $(((t1 - t0) / 1000000)) >>"$IMPORTS"
    sleep "$IDLE_SECS"
    printf 'pocketbase\t%s\n' "$(status_kb "$PB_PID" VmRSS)" >>"$MEMORY"
    # The records of the same 2,000 products, by id.
    python3 - "$WORK/catalog.csv" "$WORK/pb-ids.txt" "$WORK/handles.txt" >"$WORK/pocketbase-records.txt" <<'EOF'
import csv, sys
order = []
for row in csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")):
    if not order or order[-1] != row["handle"]:
        order.append(row["handle"])
ids = dict(zip(order, open(sys.argv[2]).read().split()))
for handle in open(sys.argv[3]).read().split():
    print("/api/collections/products/records/" + ids[handle])
EOF
    RECORDS="$PB/api/collections/products/records"
    curl -fsS -o /dev/null "$PB$(head -n1 "$WORK/pocketbase-records.txt")" || die "PocketBase does not answer a record"

    bench catalog pocketbase "list 20, skipTotal" "$PB_PID" "$RECORDS?perPage=20&skipTotal=1" "${REPORT[@]}"
    BENCH_PATHS_FILE="$WORK/pocketbase-records.txt" bench catalog pocketbase "record by id (2,000 records)" "$PB_PID" "$PB" "${PATHS[@]}"
    bench catalog pocketbase "title contains 'cotton', skipTotal" "$PB_PID" \
        "$RECORDS?perPage=20&skipTotal=1&filter=(title~'cotton')" "${REPORT[@]}"
    bench catalog pocketbase "category t-shirts, skipTotal" "$PB_PID" \
        "$RECORDS?perPage=20&skipTotal=1&filter=(category='t-shirts')" "${REPORT[@]}"
    sleep "$IDLE_SECS"
    printf 'pocketbase-after\t%s\n' "$(status_kb "$PB_PID" VmRSS)" >>"$MEMORY"
    stop_pid "$PB_PID"
fi
echo "load_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

# ---------------------------------------------------------------- the report
awk -F'\t' -v memory="$MEMORY" -v imports="$IMPORTS" -v machine="$OUT/machine.txt" -f "$BENCH/catalog.awk" "$RESULTS" \
    | tee "$OUT/summary.md"
log "raw results in $OUT"
