-- Sends at a fixed rate (requests per second per wrk thread, the first script argument) and prints
-- the same JSON line as report.lua. wrk 4 has no rate option (wrk2 is not packaged by Debian), so each
-- free connection takes the next slot of a per-thread schedule through delay(); slots are absolute
-- times, so a late response does not push later requests back. Keep connections well above
-- rate × latency so a free connection is always waiting for the next slot.

local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } conveyor_timespec;
  int clock_gettime(int clock_id, conveyor_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local now_ts = ffi.new("conveyor_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now_ts)
  return tonumber(now_ts.tv_sec) * 1000 + tonumber(now_ts.tv_nsec) / 1e6
end

local interval_ms = nil
local next_slot = nil

function init(args)
  local rate = tonumber(args[1])
  if not rate or rate <= 0 then
    error("paced.lua needs the rate as its first argument: wrk ... -s paced.lua URL -- 1000")
  end
  interval_ms = 1000 / rate
end

function delay()
  local now = now_ms()
  if next_slot == nil then
    next_slot = now
  end
  local wait = next_slot - now
  next_slot = next_slot + interval_ms
  if wait < 0 then
    return 0
  end
  return wait
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"conveyor_wrk": 1, "requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "p999_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
