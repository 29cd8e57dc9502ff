-- wrk script: POST realistic Vonage receipts as JSON, a new messageId each time.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local counter = 0
local statuses = {"accepted", "delivered", "delivered", "delivered", "failed"}
request = function()
  counter = counter + 1
  local status = statuses[(counter % #statuses) + 1]
  local body = string.format(
    '{"msisdn":"447700900%03d","to":"Vonage APIs","network-code":"23410","messageId":"%08X%08X",' ..
    '"price":"0.03330000","status":"%s","scts":"2001011400","err-code":"%s",' ..
    '"api-key":"abcd1234","message-timestamp":"2020-01-01 14:00:00"}',
    counter % 1000, math.random(0, 0x7fffffff), counter, status, status == "failed" and "2" or "0")
  return wrk.format(nil, nil, nil, body)
end
