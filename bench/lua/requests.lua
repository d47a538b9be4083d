-- Sends the requests listed in the file named by BENCH_REQUESTS_FILE, one a line as
-- `METHOD PATH JSON-BODY`, taken in turn (each thread starting at its own place), then reports
-- like report.lua. Spreads writes over many carts: one request type measured on its own.
wrk.headers["Content-Type"] = "application/json"

local requests = {}
local file = assert(io.open(os.getenv("BENCH_REQUESTS_FILE") or "", "r"), "BENCH_REQUESTS_FILE names no readable file")
for line in file:lines() do
  local method, path, body = string.match(line, "^(%u+) (%S+) (.*)$")
  if method then requests[#requests + 1] = { method, path, body } end
end
file:close()
assert(#requests > 0, "BENCH_REQUESTS_FILE lists no request")
local threads = 0
local next_request = 1

function setup(thread)
  threads = threads + 1
  thread:set("first", threads * 7919)
end

function init(args)
  next_request = first or 1
end

function request()
  local r = requests[(next_request - 1) % #requests + 1]
  next_request = next_request + 1
  return wrk.format(r[1], r[2], nil, r[3])
end

dofile((os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/report.lua")
