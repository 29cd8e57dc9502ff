-- Raise an event once: record it, and enqueue its handler calls, atomically.
-- KEYS[1]: the event's guard (SET NX; its TTL is how long the same event stays recognised), which
-- holds when it was raised (the event's raised_at; '1' in what dlrq 0.1-0.2 wrote).
-- KEYS[2]: the list of the latest alerts (the console's). KEYS[3], optional: the message record
-- that keeps the event among its alerts.
-- ARGV[1]: event JSON, ARGV[2]: guard TTL in seconds, ARGV[3]: the records' layout (JSON, see
-- records.lua), ARGV[4]: '1' if the event is an alert, ARGV[5]: how many alerts the list keeps,
-- ARGV[6]: the event's id, ARGV[7...]: the commands RQ recorded for the handler calls, each as its
-- length then its arguments.
-- Returns 1 if the event was new, 0 if it had been raised already (nothing is written then).
if not redis.call('SET', KEYS[1], cjson.decode(ARGV[1]).raised_at, 'NX', 'EX', ARGV[2]) then
  return 0
end
if ARGV[4] == '1' then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[5]) - 1)
  if KEYS[3] then
    local R = rc_config(ARGV[3])
    local msg = rc_message(R, KEYS[3])
    if msg then
      msg.l[ARGV[6]] = ARGV[1]
      rc_message_store(R, KEYS[3], msg, nil)
    end
  end
end
run_commands(7)
return 1
