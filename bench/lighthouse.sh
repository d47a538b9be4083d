#!/usr/bin/env bash
# Lighthouse (mobile preset, its default throttling) on the storefront's page types: home, a
# category, a product and a blog post of the demo shop, in a fresh data folder. Prints a
# Markdown table of the four category scores and the main metrics per page; the JSON reports
# go to bench/results/<UTC time>-lighthouse/.
#
#   bash bench/lighthouse.sh
#
# Needs Debian's chromium (installed if missing) and npm; Lighthouse 12.2.3 is installed
# under target/bench-node (later versions need Node 22).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BENCH_BACKROOM_BIN:-$ROOT/target/release/backroom}
OUT="$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)-lighthouse"
TOOLS="$ROOT/target/bench-node"
mkdir -p "$OUT" "$TOOLS"
log() { printf '[lighthouse] %s\n' "$*" >&2; }

if ! command -v chromium >/dev/null 2>&1; then
    log "installing Chromium"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
[ -x "$TOOLS/node_modules/.bin/lighthouse" ] || npm install --prefix "$TOOLS" --no-audit --no-fund --silent -E lighthouse@12.2.3
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release)

DATA=$(mktemp -d "${TMPDIR:-/tmp}/backroom-lighthouse.XXXXXX")
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
(cd "$DATA" && exec env BACKROOM_DATA_DIR="$DATA" BACKROOM_LISTEN="127.0.0.1:$PORT" BACKROOM_LOG__LEVEL=warn "$BIN" serve --demo) \
    >"$OUT/backroom.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 120); do
    curl -fsS -o /dev/null "$BASE/health/ready" 2>/dev/null && break
    sleep 0.5
done
HANDLE=$(curl -fsS "$BASE/api/v1/store/products?available=true&limit=1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["handle"])')
POST=$(curl -fsS "$BASE/api/v1/store/posts?limit=1" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["slug"])')

echo "| page | performance | accessibility | best practices | SEO | FCP | LCP | TBT | CLS |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for page in "home /" "category /categories/clothing" "product /products/$HANDLE" "post /blog/$POST"; do
    name=${page%% *}
    path=${page#* }
    log "$name: $path"
    CHROME_PATH=/usr/bin/chromium "$TOOLS/node_modules/.bin/lighthouse" "$BASE$path" --quiet \
        --chrome-flags="--headless=new --no-sandbox --disable-gpu --disable-background-networking --disable-dev-shm-usage" \
        --output=json --output-path="$OUT/$name.json"
    python3 - "$OUT/$name.json" "$name" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
score = lambda c: round(report["categories"][c]["score"] * 100)
metric = lambda a: report["audits"][a]["displayValue"]
print(f"| {sys.argv[2]} | {score('performance')} | {score('accessibility')} | {score('best-practices')} | {score('seo')} "
      f"| {metric('first-contentful-paint')} | {metric('largest-contentful-paint')} | {metric('total-blocking-time')} "
      f"| {metric('cumulative-layout-shift')} |")
PY
done
log "reports in $OUT"
