-- Adds one unit to a cart: POSTs to the carts and variants listed in BENCH_CARTS_FILE (a cart
-- id and a variant id a line), taken in turn (each thread starting at its own place), then
-- reports like report.lua. Each cart always gets the same variant, so it stays one line long
-- while its quantity grows: every add prices a cart of the same size.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local adds = {}
local file = assert(io.open(os.getenv("BENCH_CARTS_FILE") or "", "r"), "BENCH_CARTS_FILE names no readable file")
for line in file:lines() do
  local cart, variant = string.match(line, "^(%S+)%s+(%S+)$")
  if cart then
    adds[#adds + 1] = { "/api/v1/store/carts/" .. cart .. "/lines", '{"variant_id":"' .. variant .. '","quantity":1}' }
  end
end
file:close()
local threads = 0
local next_add = 1

function setup(thread)
  threads = threads + 1
  thread:set("first", threads * 7919)
end

function init(args)
  next_add = first or 1
end

function request()
  local add = adds[(next_add - 1) % #adds + 1]
  next_add = next_add + 1
  return wrk.format(nil, add[1], nil, add[2])
end

dofile((os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/report.lua")
