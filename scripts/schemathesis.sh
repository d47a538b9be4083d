#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis: no 5xx, and every
# answer (status, content type, headers, body) as documented.
#
#   scripts/schemathesis.sh [path/to/backroom [extra `schemathesis run` options...]]
#
# Builds nothing: pass a binary built beforehand (default: target/debug/backroom). Starts it
# on a free loopback port with a throwaway data folder, creates an owner and a customer,
# signs both in, and runs schemathesis with the staff token for the admin API and the
# customer token for the store API, so that what lies behind sign-in is exercised too.
# Exits non-zero on any finding. The server is stopped and its data removed on exit.
#
# Tunables: SCHEMATHESIS_MAX_EXAMPLES (examples per operation, default 100) and
# SCHEMATHESIS_SEED (default 20261124). JUnit reports go to target/schemathesis/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCHEMATHESIS_VERSION="4.32.5"
VENV="$ROOT/target/test-venv"
BIN="${1:-$ROOT/target/debug/backroom}"
EXTRA_ARGS=("${@:2}") # passed on to `schemathesis run`, e.g. --max-failures 1
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
SEED="${SCHEMATHESIS_SEED:-20261124}"
REPORT_DIR="$ROOT/target/schemathesis"
OWNER_EMAIL="owner@example.com"
OWNER_PASSWORD="a long owner passphrase"
CUSTOMER_EMAIL="customer@example.com"
CUSTOMER_PASSWORD="a long customer passphrase"

log() { printf 'schemathesis.sh: %s\n' "$*" >&2; }

if [[ ! -x "$BIN" ]]; then
    log "no executable at $BIN; run \`cargo build\` first or pass the binary's path"
    exit 2
fi
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
cd "$ROOT"

# --- the virtualenv, reused while it holds the pinned version ---------------------------
installed_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true
}
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
if [[ "$(installed_version)" != "$SCHEMATHESIS_VERSION" ]]; then
    log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
PY="$VENV/bin/python"
ST="$VENV/bin/schemathesis"

# --- the server ------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/backroom-schemathesis.XXXXXX")"
SERVER_PID=""
# shellcheck disable=SC2317 # invoked by the trap below
cleanup() {
    local status=$?
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -s "$WORK/server.log" ]]; then
        log "server log (last 40 lines):"
        tail -n 40 "$WORK/server.log" >&2 || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
BASE="http://127.0.0.1:$PORT"

# Only the settings below: nothing inherited from the caller's environment or a backroom.toml.
while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep '^BACKROOM_' || true)
export BACKROOM_CONFIG="$WORK/none.toml"
export BACKROOM_LISTEN="127.0.0.1:$PORT"
export BACKROOM_DATA_DIR="$WORK/data"
export BACKROOM_LOG__LEVEL="warn"
export BACKROOM_LOG__FORMAT="json"

"$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 300); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "the server exited before it was ready"
        exit 1
    fi
    if curl -fsS -o /dev/null --max-time 2 "$BASE/health/ready" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
curl -fsS -o /dev/null --max-time 2 "$BASE/health/ready" || { log "the server is not ready after 30 s"; exit 1; }
log "server ready at $BASE"

printf '%s\n' "$OWNER_PASSWORD" | "$BIN" admin create --email "$OWNER_EMAIL" --name Owner >/dev/null

sign_in() { # $1: admin or store, $2: email, $3: password
    curl -fsS --max-time 10 -X POST "$BASE/api/v1/$1/auth/sessions" \
        -H 'Content-Type: application/json' \
        -d "{\"email\": \"$2\", \"password\": \"$3\", \"mode\": \"token\"}" |
        "$PY" -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}
STAFF_TOKEN="$(sign_in admin "$OWNER_EMAIL" "$OWNER_PASSWORD")"
curl -fsS --max-time 10 -o /dev/null -X POST "$BASE/api/v1/store/customers" -H 'Content-Type: application/json' \
    -d "{\"email\": \"$CUSTOMER_EMAIL\", \"password\": \"$CUSTOMER_PASSWORD\", \"first_name\": \"Ada\"}"
# One customer session per run below, opened now: once the fuzzing has spent this
# address's sign-in allowance, signing in again would answer 429.
CUSTOMER_TOKENS=()
for _ in 1 2 3; do
    CUSTOMER_TOKENS+=("$(sign_in store "$CUSTOMER_EMAIL" "$CUSTOMER_PASSWORD")")
done

# --- schemathesis ----------------------------------------------------------------------
# Checks that apply to this API. Left out on purpose:
# - positive_data_acceptance: the schema cannot say which emails, passwords, tokens or
#   credentials are good, so schema-valid requests are rightly refused with 401/422.
# - object_level_authorization: needs several identities of one kind (peers) to compare.
CHECKS="not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance"
CHECKS+=",response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method"
CHECKS+=",allow_header_conformance,ignored_auth,use_after_free,ensure_resource_availability"

run_schemathesis() { # $1: customer token, $2: fail when an operation only ever got 401/403 (yes/no); then options
    local config="$WORK/schemathesis-$RANDOM.toml"
    # Each bearer scheme gets its own token; the cookie schemes get none, so requests are
    # authenticated by bearer token only (no CSRF token involved).
    cat >"$config" <<TOML
[cache]
enabled = false

[auth.openapi.staff_session]
bearer = "$STAFF_TOKEN"

[auth.openapi.customer_session]
bearer = "$1"
TOML
    # Fails the run if the tokens stopped working: it would test nothing behind sign-in.
    [[ "$2" == yes ]] && printf '\n[warnings]\nfail-on = ["missing_auth"]\n' >>"$config"
    shift 2
    "$ST" --config-file "$config" run "$BASE/api/openapi.json" \
        --checks "$CHECKS" \
        --max-examples "$MAX_EXAMPLES" \
        --seed "$SEED" \
        --workers 1 \
        --generation-database none \
        --request-timeout 20 \
        --no-color \
        "$@"
}

# These end the very sessions the runs authenticate with, so they run last, on their own:
# ending one session by id (with a session of its own), then signing out.
END_ONE_SESSION="/api/v1/store/customers/me/sessions/{id}"
SIGN_OUTS=(/api/v1/admin/auth/session /api/v1/store/auth/session)

mkdir -p "$REPORT_DIR"
cd "$WORK" # schemathesis keeps per-project state under the working directory
status=0
log "run 1/3: every operation but those that end a session"
run_schemathesis "${CUSTOMER_TOKENS[0]}" yes \
    --exclude-path "$END_ONE_SESSION" --exclude-path "${SIGN_OUTS[0]}" --exclude-path "${SIGN_OUTS[1]}" \
    --report junit --report-junit-path "$REPORT_DIR/junit.xml" "${EXTRA_ARGS[@]}" || status=$?
log "run 2/3: ending a session by id"
run_schemathesis "${CUSTOMER_TOKENS[1]}" yes --include-path "$END_ONE_SESSION" \
    --report junit --report-junit-path "$REPORT_DIR/junit-end-session.xml" "${EXTRA_ARGS[@]}" || status=$?
log "run 3/3: signing out"
run_schemathesis "${CUSTOMER_TOKENS[2]}" no --include-path "${SIGN_OUTS[0]}" --include-path "${SIGN_OUTS[1]}" \
    --report junit --report-junit-path "$REPORT_DIR/junit-sign-out.xml" "${EXTRA_ARGS[@]}" || status=$?
if [[ $status -ne 0 ]]; then
    log "FAILED: see the findings above (JUnit reports in $REPORT_DIR)"
else
    log "passed"
fi
exit "$status"
