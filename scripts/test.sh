#!/usr/bin/env bash
# Runs the whole test suite: every conformance test on SQLite and on PostgreSQL, the unit
# tests, and schemathesis against the OpenAPI document. It finds or starts what it needs.
#
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh accounts   # extra arguments filter the Rust tests
#
# PostgreSQL: BACKROOM_TEST_POSTGRES_URL, else the server on 127.0.0.1:5432, else one started
# here (the machine's pg_ctlcluster, or a private initdb under target/). Under CI=true a
# missing PostgreSQL fails the run; elsewhere its half is skipped, loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

pg_bin() {
  local tool=$1
  if command -v "$tool" >/dev/null 2>&1; then command -v "$tool"; return; fi
  ls /usr/lib/postgresql/*/bin/"$tool" 2>/dev/null | sort -V | tail -n 1
}

pg_answers() {
  psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1
}

find_or_start_postgres() {
  if [ -n "${BACKROOM_TEST_POSTGRES_URL:-}" ]; then
    pg_answers "$BACKROOM_TEST_POSTGRES_URL" && return 0
    log "BACKROOM_TEST_POSTGRES_URL does not answer"
    return 1
  fi
  local url="postgres://postgres@127.0.0.1:5432/postgres"
  if pg_answers "$url"; then export BACKROOM_TEST_POSTGRES_URL=$url; return 0; fi
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    log "starting the machine's PostgreSQL"
    for version in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
    done
    for _ in $(seq 1 30); do
      if pg_answers "$url"; then export BACKROOM_TEST_POSTGRES_URL=$url; return 0; fi
      sleep 0.5
    done
  fi
  local initdb pg_ctl
  initdb=$(pg_bin initdb); pg_ctl=$(pg_bin pg_ctl)
  if [ -n "$initdb" ] && [ -n "$pg_ctl" ]; then
    local dir=$PWD/target/test-postgres port=55432 runas=()
    url="postgres://postgres@127.0.0.1:$port/postgres"
    if pg_answers "$url"; then export BACKROOM_TEST_POSTGRES_URL=$url; return 0; fi
    log "starting a private PostgreSQL in $dir"
    # PostgreSQL refuses to run as root: use the postgres account when there is one.
    if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then runas=(runuser -u postgres --); fi
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 && chown postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      "${runas[@]}" "$initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
    fi
    "${runas[@]}" "$pg_ctl" -D "$dir/data" -l "$dir/log" -o "-p $port -k $dir -c listen_addresses=127.0.0.1" -w start >/dev/null
    if pg_answers "$url"; then export BACKROOM_TEST_POSTGRES_URL=$url; return 0; fi
  fi
  return 1
}

if find_or_start_postgres; then
  log "PostgreSQL: $BACKROOM_TEST_POSTGRES_URL"
  # Databases left by an interrupted run; one still in use (another suite's) is left alone.
  psql "$BACKROOM_TEST_POSTGRES_URL" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'br_test_%'" |
    while read -r name; do
      psql "$BACKROOM_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS \"$name\"" >/dev/null 2>&1 || true
    done
elif [ "${CI:-}" = "true" ]; then
  log "PostgreSQL is required under CI=true and none could be found or started"
  exit 1
else
  printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
  printf '!!! No PostgreSQL: the PostgreSQL half of the suite will be SKIPPED. !!!\n' >&2
  printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
  export BACKROOM_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:1/unreachable
fi

# The storefront's browser test drives Debian's Chromium; the page checks use Java (the Nu Html
# Checker) and npm packages, which the tests install under target/ themselves.
if ! command -v chromium >/dev/null 2>&1; then
  log "installing Chromium (Debian's chromium and chromium-driver)"
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" dpkg --configure -a || true
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

log "Rust tests (SQLite and PostgreSQL)"
cargo nextest run --workspace --profile ci "$@"

if [ $# -eq 0 ]; then
  log "schemathesis against /api/openapi.json"
  cargo build --bin backroom
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  bash scripts/schemathesis.sh "$target_dir/debug/backroom"
fi
