-- wrk script for scripts/load.sh: optional POST body, a per-thread request
-- cap (so a run is bounded in count as well as in time), and one
-- machine-readable RESULT line with throughput and latency percentiles.
--
-- Environment: LOAD_BODY_FILE (JSON body; POST when set, GET otherwise),
-- LOAD_MAX_PER_THREAD (requests per wrk thread before it stops).

local body_file = os.getenv("LOAD_BODY_FILE")
local max_per_thread = tonumber(os.getenv("LOAD_MAX_PER_THREAD") or "100000")
-- LOAD_DELAY_MS: mean pause before each request on a connection, to offer
-- a chosen rate below saturation (latency is then measured unqueued). Each
-- pause is drawn from an exponential distribution with that mean, so that
-- connections do not stay in step and arrive in bursts (a fixed pause kept
-- them in step: every connection's request queued behind the others'). wrk
-- takes whole milliseconds, so a draw is rounded up or down at random in
-- proportion to its fraction: the mean stays exact below 1 ms.
local delay_ms = tonumber(os.getenv("LOAD_DELAY_MS") or "0")

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + (thread_id or 0))
end

function delay()
  if delay_ms <= 0 then
    return 0
  end
  local x = -delay_ms * math.log(1 - math.random())
  local whole = math.floor(x)
  if math.random() < x - whole then
    whole = whole + 1
  end
  return whole
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
