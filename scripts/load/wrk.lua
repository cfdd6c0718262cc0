-- wrk script for scripts/load.sh: optional POST body, a per-thread request
-- cap (so a run is bounded in count as well as in time), and one
-- machine-readable RESULT line with throughput and latency percentiles.
--
-- Environment: LOAD_BODY_FILE (JSON body; POST when set, GET otherwise),
-- LOAD_MAX_PER_THREAD (requests per wrk thread before it stops).

local body_file = os.getenv("LOAD_BODY_FILE")
local max_per_thread = tonumber(os.getenv("LOAD_MAX_PER_THREAD") or "100000")
-- LOAD_DELAY_MS: pause before each request on a connection, to offer a
-- chosen rate below saturation (latency is then measured unqueued).
local delay_ms = tonumber(os.getenv("LOAD_DELAY_MS") or "0")

function delay()
  return delay_ms
end

if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  f:close()
  wrk.headers["Content-Type"] = "application/json"
end

local count = 0

function response(status, headers, body)
  count = count + 1
  if count >= max_per_thread then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f " ..
    "non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    e.status, e.connect, e.read, e.write, e.timeout))
end
