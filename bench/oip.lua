-- wrk script: POST one fixed OIP v2 body (file in $BODY) to $PATH_INFER; on exit print one JSON line
-- with exact latency percentiles (microseconds) and, with $COUNT_STATUS=1, counts per HTTP status.
local body_file = os.getenv("BODY")
local f = assert(io.open(body_file, "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.path = os.getenv("PATH_INFER") or wrk.path

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

if os.getenv("COUNT_STATUS") == "1" then
  counts = {}  -- global: done() reads each thread's copy with thread:get
  function response(status, headers, body)
    counts[status] = (counts[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local parts = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    if c then
      for k, v in pairs(c) do
        table.insert(parts, string.format('"%s": %d', k, v))
      end
    end
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors_status": %d, "errors_connect": %d, "errors_timeout": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, "status": {%s}}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, table.concat(parts, ", ")))
end
