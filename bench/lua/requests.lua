-- Sends the requests listed in the file named by BENCH_REQUESTS_FILE, one a line as
-- `METHOD PATH JSON-BODY`, taken in turn (each thread starting at its own place), then reports
-- like report.lua, and which answers were not 2xx. Spreads writes over many carts: one request
-- type measured on its own.
wrk.headers["Content-Type"] = "application/json"

local requests = {}
local file = assert(io.open(os.getenv("BENCH_REQUESTS_FILE") or "", "r"), "BENCH_REQUESTS_FILE names no readable file")
for line in file:lines() do
  local method, path, body = string.match(line, "^(%u+) (%S+) (.*)$")
  if method then requests[#requests + 1] = { method, path, body } end
end
file:close()
assert(#requests > 0, "BENCH_REQUESTS_FILE lists no request")
local threads = {}
local next_request = 1
-- Per thread: answers other than 2xx, by status ("404=53 503=2"). A string, as wrk 4.1's
-- thread:get mishandles tables (it pops one value too many from the thread's stack).
statuses = ""
local by_status = {}

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("first", #threads * 7919)
end

function init(args)
  next_request = first or 1
end

function request()
  local r = requests[(next_request - 1) % #requests + 1]
  next_request = next_request + 1
  return wrk.format(r[1], r[2], nil, r[3])
end

function response(status, headers, body)
  if status >= 300 then
    by_status[status] = (by_status[status] or 0) + 1
    local parts = {}
    for code, n in pairs(by_status) do parts[#parts + 1] = code .. "=" .. n end
    statuses = table.concat(parts, " ")
  end
end

-- Reports like report.lua, then which answers were not 2xx: a STATUSES line (`404=53 ...`).
dofile((os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/report.lua")
local report = done
done = function(summary, latency, requests)
  report(summary, latency, requests)
  write_statuses(threads)
end
