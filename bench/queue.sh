#!/usr/bin/env bash
# The job queue's benchmark (bench/queue.rs) with a real SMTP server to send to: installs
# aiosmtpd into target/bench-venv, starts it on loopback (discarding what it receives), runs
# the benchmark on SQLite and PostgreSQL, and stops the server.
#
#   bash bench/queue.sh
#
# Settings: those of bench/queue.rs (BENCH_JOBS, BENCH_MESSAGES, BENCH_TXS, BENCH_BACKENDS,
# BENCH_PG_URL).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/target/bench-venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c 'import aiosmtpd' 2>/dev/null \
    || "$VENV/bin/pip" install --quiet --disable-pip-version-check 'aiosmtpd==1.4.6'

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$VENV/bin/python" -m aiosmtpd -n -l "127.0.0.1:$PORT" -c aiosmtpd.handlers.Sink &
SMTP=$!
trap 'kill $SMTP 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

cd "$ROOT"
BENCH_SMTP_PORT=$PORT cargo bench --bench queue
