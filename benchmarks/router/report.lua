-- Prints one JSON line with wrk's own numbers when the run ends; bench.py reads it.
-- Used for the unpaced (as fast as possible) runs: it defines no delay(), so wrk sends back to back.

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
