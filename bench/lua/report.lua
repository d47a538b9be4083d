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

-- Writes a STATUSES line: the answers that were not 2xx, by status, summed over the threads,
-- each of which keeps them in its global `statuses` (`404=53 409=2`).
function write_statuses(threads)
  local all, parts = {}, {}
  for _, thread in ipairs(threads) do
    for status, n in string.gmatch(thread:get("statuses"), "(%d+)=(%d+)") do
      all[status] = (all[status] or 0) + tonumber(n)
    end
  end
  for status, n in pairs(all) do parts[#parts + 1] = status .. "=" .. n end
  table.sort(parts)
  io.write("STATUSES " .. table.concat(parts, " ") .. "\n")
end
