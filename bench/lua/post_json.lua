-- Sends every request as a POST with a JSON body, then reports like report.lua. The bodies are
-- the lines of the BENCH_BODIES environment variable, taken in turn (each thread starting at
-- its own place), so that sign-ins spread over several accounts.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local bodies = {}
for line in string.gmatch(os.getenv("BENCH_BODIES") or "{}", "[^\n]+") do
  bodies[#bodies + 1] = line
end
local threads = 0
local next_body = 1

function setup(thread)
  threads = threads + 1
  thread:set("first", threads)
end

function init(args)
  next_body = first or 1
end

function request()
  local body = bodies[(next_body - 1) % #bodies + 1]
  next_body = next_body + 1
  return wrk.format(nil, nil, nil, body)
end

dofile((os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/report.lua")
