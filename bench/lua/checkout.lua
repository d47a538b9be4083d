-- Buyers going through the whole checkout, each on its own cart: create the cart, add 3 lines,
-- set the email and address, choose the first shipping option, place the order with the test
-- card; then start again. Prints report.lua's line, then one STEP line per step (its own p50,
-- p99, errors), a STATUSES line (the answers that were not 2xx) and an ORDERS line.
--
-- Run it with as many threads as connections (wrk -t32 -c32): wrk calls request() and
-- response() per thread, not per connection, so with one connection a thread's state is one
-- buyer's flow. Step latencies are taken here, from request() (called as the request is
-- written) to response() (called once the answer is read), with CLOCK_MONOTONIC through
-- LuaJIT's ffi; wrk's own histogram mixes the steps.
--
-- Environment: BENCH_VARIANTS_FILE (variant ids, one a line; each cart takes 3 in turn) and
-- BENCH_HOT_VARIANT (optional: every cart's third line is that variant instead; when it is
-- sold out, adding it or placing the order answers 409, and the buyer starts a new cart).
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *t);
void *realloc(void *p, size_t size);
]]
local clock = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1e6 + tonumber(clock.tv_nsec) / 1e3
end

local variants = {}
local file = assert(io.open(os.getenv("BENCH_VARIANTS_FILE") or "", "r"), "BENCH_VARIANTS_FILE names no readable file")
for line in file:lines() do
  if #line > 0 then variants[#variants + 1] = line end
end
file:close()
assert(#variants >= 3, "BENCH_VARIANTS_FILE needs at least 3 variants")
local hot = os.getenv("BENCH_HOT_VARIANT")
if hot == "" then hot = nil end

local STEPS = { "create cart", "add line", "address", "shipping method", "place order" }
-- The flow, as the step each request is (add line three times).
local FLOW = { 1, 2, 2, 2, 3, 4, 5 }
-- Each cart has a buyer of its own: a shop's orders come from many people, not one customer
-- with thousands of orders.
local ADDRESS = '","shipping_address":{"first_name":"Ana","last_name":"Silva",' ..
  '"line1":"5 rue Saint-Denis","city":"Paris","postcode":"75001","country":"FR"}}'
local PAYMENT = '{"payment":{"provider":"test","card_number":"4242424242424242"}}'

-- setup() runs in the main state: it numbers the threads and keeps them for done().
local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
  thread:set("buyer", #threads)
end

-- Per thread, i.e. per buyer; done() reads them with thread:get. Only numbers and strings
-- cross: wrk 4.1's thread:get pops one value too many from the thread's stack when it copies
-- a table, which crashed a run now and then. So each successful answer's step and µs go into
-- C memory (one double: µs * 8 + step), whose address done() is given as a number.
samples = 0      -- answers recorded
samples_addr = 0 -- where they are
local buffer, capacity = nil, 0
statuses = ""    -- answers other than 2xx, by status (the hot product's 409s too): "409=12 503=1"
local by_status = {}
-- err_N: step N's unexpected answers (409s too, unless the hot product explains them)
orders = 0
orders_hot = 0  -- orders holding the hot variant
sold_out_add = 0 -- hot variant refused when added (409)
sold_out_place = 0 -- order refused for the hot variant's stock (409)
local at, cart, method, started, next_variant, keys
local run = tostring(os.time())

function init(args)
  for step = 1, #STEPS do
    _G["err_" .. step] = 0
  end
  at = 1
  next_variant = ((buyer or 1) - 1) * 3
  keys = 0
end

local function record(step, took)
  if samples == capacity then
    capacity = math.max(4096, capacity * 2)
    buffer = ffi.cast("double *", ffi.C.realloc(buffer, capacity * 8))
    assert(buffer ~= nil, "out of memory for latencies")
    samples_addr = tonumber(ffi.cast("uintptr_t", buffer))
  end
  buffer[samples] = math.floor(took) * 8 + step
  samples = samples + 1
end

local function headers(extra)
  local h = { ["Content-Type"] = "application/json" }
  if extra then for k, v in pairs(extra) do h[k] = v end end
  return h
end

local function restart()
  at, cart, method = 1, nil, nil
end

function request()
  local step = FLOW[at]
  local req
  if at == 1 then
    req = wrk.format("POST", "/api/v1/store/carts", headers(), "{}")
  elseif step == 2 then
    local variant
    if at == 4 and hot then
      variant = hot
    else
      variant = variants[next_variant % #variants + 1]
      next_variant = next_variant + 1
    end
    req = wrk.format("POST", "/api/v1/store/carts/" .. cart .. "/lines", headers(),
      '{"variant_id":"' .. variant .. '","quantity":1}')
  elseif step == 3 then
    req = wrk.format("PATCH", "/api/v1/store/carts/" .. cart, headers(),
      '{"email":"buyer-' .. run .. "-" .. (buyer or 1) .. "-" .. keys .. '@example.com' .. ADDRESS)
  elseif step == 4 then
    req = wrk.format("PATCH", "/api/v1/store/carts/" .. cart, headers(), '{"shipping_method_id":"' .. method .. '"}')
  else
    keys = keys + 1
    req = wrk.format("POST", "/api/v1/store/carts/" .. cart .. "/complete",
      headers({ ["Idempotency-Key"] = "bench-" .. run .. "-" .. (buyer or 1) .. "-" .. keys }), PAYMENT)
  end
  started = now_us()
  return req
end

function response(status, _, body)
  local took = now_us() - started
  local step = FLOW[at]
  local ok = (at == 1 and status == 201) or (step == 5 and status == 201) or (step ~= 5 and at ~= 1 and status == 200)
  if ok and at == 1 then
    cart = string.match(body, '^{"id":"(cart_[%w]+)"')
    ok = cart ~= nil
  elseif ok and step == 3 then
    method = string.match(body, '"shipping_options":%[{"id":"([%w_]+)"')
    ok = method ~= nil
  end
  if status >= 300 then
    by_status[status] = (by_status[status] or 0) + 1
    local parts = {}
    for code, n in pairs(by_status) do parts[#parts + 1] = code .. "=" .. n end
    statuses = table.concat(parts, " ")
  end
  if not ok then
    if hot and status == 409 and at == 4 then
      sold_out_add = sold_out_add + 1
    elseif hot and status == 409 and step == 5 then
      sold_out_place = sold_out_place + 1
    else
      _G["err_" .. step] = _G["err_" .. step] + 1
    end
    restart()
    return
  end
  record(step, took)
  if step == 5 then
    orders = orders + 1
    if hot then orders_hot = orders_hot + 1 end
    restart()
  else
    at = at + 1
  end
end

local function percentile(sorted, p)
  if #sorted == 0 then return 0 end
  return sorted[math.max(1, math.ceil(#sorted * p / 100))]
end

dofile((os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/report.lua")
local report = done
done = function(summary, latency, requests)
  report(summary, latency, requests)
  local totals = { orders = 0, orders_hot = 0, sold_out_add = 0, sold_out_place = 0 }
  local by_step = {}
  for step = 1, #STEPS do by_step[step] = {} end
  for _, thread in ipairs(threads) do
    local n, addr = thread:get("samples"), thread:get("samples_addr")
    local recorded = ffi.cast("double *", addr)
    for i = 0, n - 1 do
      local value = recorded[i]
      local step = value % 8
      local list = by_step[step]
      list[#list + 1] = (value - step) / 8
    end
  end
  for step = 1, #STEPS do
    local all, failed = by_step[step], 0
    for _, thread in ipairs(threads) do failed = failed + thread:get("err_" .. step) end
    table.sort(all)
    io.write(string.format("STEP name=%s count=%d p50_us=%.0f p99_us=%.0f max_us=%.0f errors=%d\n",
      (STEPS[step]:gsub(" ", "_")), #all, percentile(all, 50), percentile(all, 99), all[#all] or 0, failed))
  end
  for _, thread in ipairs(threads) do
    for name in pairs(totals) do totals[name] = totals[name] + thread:get(name) end
  end
  write_statuses(threads)
  io.write(string.format("ORDERS orders=%d duration_us=%.0f orders_hot=%d sold_out_add=%d sold_out_place=%d\n",
    totals.orders, summary.duration, totals.orders_hot, totals.sold_out_add, totals.sold_out_place))
end
