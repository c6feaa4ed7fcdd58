-- wrk script for the jobline benchmarks.
-- Arguments after "--": mode, target, body_file, limit, rate, marker
--   mode "post": POST body_file's contents to target (a path)
--   mode "get":  GET target .. one id drawn at random from body_file (one id a line),
--                or target alone when body_file is "-"
--   limit: stop each thread after this many responses (0: run for the duration)
--   rate:  requests per second for each thread (0: as fast as the connections go)
--   marker: a file prefix; a thread that reached its limit creates marker..N, since
--           wrk itself runs for its whole duration unless interrupted (SIGINT)
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local mode, target, limit, interval, marker
local fixed_request, ids = nil, {}
local responses, next_slot = 0, nil

local function read_file(name)
  local f = assert(io.open(name, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

function init(args)
  mode, target = args[1], args[2]
  limit = tonumber(args[4]) or 0
  marker = args[6]
  local rate = tonumber(args[5]) or 0
  interval = rate > 0 and 1000 / rate or 0
  if mode == "post" then
    local headers = { ["Content-Type"] = "application/json" }
    fixed_request = wrk.format("POST", target, headers, read_file(args[3]))
  elseif args[3] == "-" then
    fixed_request = wrk.format("GET", target)
  else
    for line in io.lines(args[3]) do ids[#ids + 1] = line end
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

function request()
  if fixed_request then return fixed_request end
  return wrk.format("GET", target .. ids[math.random(#ids)])
end

-- Pacing: each request takes the thread's next time slot, so the thread sends
-- at its rate however long each answer takes (while connections are free).
function delay()
  if interval == 0 then return 0 end
  local t = now_ms()
  if next_slot == nil or next_slot < t then next_slot = t end
  local slot = next_slot
  next_slot = next_slot + interval
  return slot - t
end

function response(status, headers, body)
  responses = responses + 1
  if limit > 0 and responses == limit then
    local f = io.open(marker .. tostring({}):sub(8), "w")
    if f then f:close() end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "latency_us": {"p50": %d, "p90": %d, ' ..
    '"p95": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean))
end
