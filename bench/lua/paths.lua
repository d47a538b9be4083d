-- Sends GETs to the paths in the file named by BENCH_PATHS_FILE (one a line), taken in turn
-- (each thread starting at its own place), then reports like report.lua. Spreads reads over
-- many products or queries instead of one that any cache would hold.
local paths = {}
local file = assert(io.open(os.getenv("BENCH_PATHS_FILE") or "", "r"), "BENCH_PATHS_FILE names no readable file")
for line in file:lines() do
  if #line > 0 then paths[#paths + 1] = line end
end
file:close()
local threads = 0
local next_path = 1

function setup(thread)
  threads = threads + 1
  thread:set("first", threads * 7919)
end

function init(args)
  next_path = first or 1
end

function request()
  local path = paths[(next_path - 1) % #paths + 1]
  next_path = next_path + 1
  return wrk.format("GET", path)
end

dofile((os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/report.lua")
