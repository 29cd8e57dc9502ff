-- Register a send (one attempt of a message) atomically and idempotently.
-- KEYS[1]: the message record. KEYS[2]: the index of deadline lists (a sorted set of their buckets),
-- KEYS[3]: the deadline list of this attempt's bucket. KEYS[4]: the sorted set of messages to
-- evaluate. KEYS[5..4+p]: the record key of each part that has a message id, then
-- KEYS[5+p..4+2p]: their 0.1-0.2 owner keys (read only: a part registered by an older version).
-- ARGV: logical id, meta (JSON, records.meta_row), attempt (JSON, records.attempt_row), the id of
-- this send's first part, TTL, the deadline's bucket (its number, and its start as the index's
-- score), "1" if a retry, now; the analytics' names (JSON, '' when off), the index of the send's
-- client-ref ('' without one: the message is added to it), the most attempts a message may have,
-- the records' layout (JSON, see records.lua), then for each part (JSON, in the order of their keys)
-- its message id and what analytics keep of its registration (analytics.lua's positions; false for
-- a part not submitted, or with analytics off).
-- Each part's record says which message it belongs to (made for a part nothing was heard of yet).
-- A submitted part counts as submitted in its registration's hour, and as resolved at once if its
-- final receipt came first. A part record that cannot be read is left as it is.
-- The message is also due at once for an evaluation of its events: receipts that came
-- first, or a part refused at send time, may have failed it.
-- Returns {outcome, attempt number}: "created", "exists" (same send registered before),
-- "unknown" (retry of a message never registered), "conflict" (a part belongs to another message),
-- "too_many" (the message has the most attempts it may, given as the number) or "unreadable"
-- (the message's record is not one dlrq wrote).
local id, meta, attempt, send_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ttl, bucket, bucket_start, retry, now = tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8] == '1', ARGV[9]
local A = an_config(ARGV[10])
local ref_index = ARGV[11]
local max_attempts = tonumber(ARGV[12])
local R = rc_config(ARGV[13])
local p = (#KEYS - 4) / 2

local parts = {}
local told = {}
for i = 1, p do
  told[i] = cjson.decode(ARGV[13 + i])
  local part = rc_load(R, KEYS[4 + i])
  local owner = part and part.o or redis.call('GET', KEYS[4 + p + i])
  if owner == true then
    owner = told[i][1]
  end
  if owner and owner ~= id then
    return {'conflict', owner}
  end
  parts[i] = part or false
end

local msg, problem = rc_message(R, KEYS[1])
if msg == nil then
  return {'unreadable', problem}
end
if msg then
  local seen = msg.k[send_id] or (send_id == id and 1)
  if seen then
    return {'exists', seen}
  end
  if not retry then
    -- The message is registered under this id by another send: the same parts, told again.
    return {'exists', 1}
  end
  if #msg.a >= max_attempts then
    return {'too_many', max_attempts}
  end
elseif retry then
  return {'unknown', 0}
else
  msg = {m = cjson.decode(meta), a = {}, k = {}, l = {}}
end
local n = #msg.a + 1
msg.a[n] = cjson.decode(attempt)
if send_id ~= id then
  msg.k[send_id] = n
end
rc_message_store(R, KEYS[1], msg, ttl)
for i = 1, p do
  local part, message_id, registration = parts[i], told[i][1], told[i][2]
  if part then
    part.o = message_id == id or id
    if A and registration then
      part.g = registration
      an_submitted(A, part.g)
      if part.fh then
        an_resolved(A, part.g, tonumber(part.fe) or part.g[REG_TIME])
      end
    end
    rc_store(R, KEYS[4 + i], part, ttl)
  end
end
if A and ref_index ~= '' then
  redis.call('ZADD', ref_index, math.floor(now), id)
  -- Nor a message, gone after ttl.
  redis.call('ZREMRANGEBYSCORE', ref_index, '-inf', '(' .. (math.floor(now) - ttl))
  an_keep(A, ref_index)
end
if A then
  an_flush(A)
end
redis.call('ZADD', KEYS[2], bucket_start, bucket)
redis.call('RPUSH', KEYS[3], id)
redis.call('ZADD', KEYS[4], now, id)
return {'created', n}
