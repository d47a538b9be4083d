-- Prints one machine-readable line at the end of a wrk run; bench/run.sh parses it.
-- Latencies are in microseconds.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%.0f duration_us=%.0f rps=%.1f p50_us=%.0f p99_us=%.0f max_us=%.0f " ..
    "errors_connect=%.0f errors_read=%.0f errors_write=%.0f errors_status=%.0f errors_timeout=%.0f\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
