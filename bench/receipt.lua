-- wrk script: POST realistic Vonage receipts as JSON, a new messageId every time.
-- Environment: BENCH_TAG keeps ids apart between runs; BENCH_RATE (requests/s over all
-- BENCH_CONNECTIONS connections) paces each connection, else wrk sends as fast as it can.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local counter = 0
local tag = tonumber(os.getenv("BENCH_TAG") or "0")
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
-- One receipt in five is an early "accepted", one in twenty a failure (err-code 2: each
-- raises a retry event, as it would in production).
local statuses = {"accepted", "delivered", "delivered", "delivered", "delivered",
                  "accepted", "delivered", "delivered", "delivered", "delivered",
                  "accepted", "delivered", "delivered", "delivered", "delivered",
                  "accepted", "delivered", "delivered", "delivered", "failed"}

-- wrk looks for delay() once, before any request: define it only when pacing.
if rate > 0 then
  local pause_ms = tonumber(os.getenv("BENCH_CONNECTIONS")) * 1000 / rate
  function delay()
    return pause_ms
  end
end

function request()
  counter = counter + 1
  local status = statuses[(counter % #statuses) + 1]
  local body = string.format(
    '{"msisdn":"447700900%03d","to":"Vonage APIs","network-code":"23410","messageId":"%08X%08X",' ..
    '"price":"0.03330000","status":"%s","scts":"2001011400","err-code":"%s",' ..
    '"api-key":"abcd1234","message-timestamp":"2020-01-01 14:00:00"}',
    counter % 1000, tag, counter, status, status == "failed" and "2" or "0")
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
