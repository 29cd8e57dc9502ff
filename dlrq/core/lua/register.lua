-- Register a send (one attempt of a message) atomically and idempotently.
-- KEYS[1]: the message hash. KEYS[2]: the deadlines sorted set. KEYS[3]: the sorted set of
-- messages to evaluate. KEYS[4...]: the owner key of each part, then the record key of each
-- submitted part.
-- ARGV: logical id, meta JSON, attempt JSON, the field naming this attempt, TTL, deadline,
-- "1" if a retry, now, then the hash's field names: meta, attempts, attempt prefix; then the
-- analytics' names (JSON, '' when off), the index of the send's client-ref ('' without one: the
-- message is added to it), the most attempts a message may have, then for each submitted part what
-- analytics keep of its registration (JSON: hour, time, network, country, client-ref), in the order
-- of their keys.
-- A submitted part counts as submitted in its registration's hour, and as resolved at once if its
-- final receipt came first.
-- The message is also due at once for an evaluation of its events: receipts that came
-- first, or a part refused at send time, may have failed it.
-- Returns {outcome, attempt number}: "created", "exists" (same send registered before),
-- "unknown" (retry of a message never registered), "conflict" (a part belongs to another message)
-- or "too_many" (the message has the most attempts it may, given as the number).
local id, meta, attempt, attempt_key = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ttl, deadline, retry, now = tonumber(ARGV[5]), ARGV[6], ARGV[7] == '1', ARGV[8]
local meta_field, attempts_field, attempt_prefix = ARGV[9], ARGV[10], ARGV[11]
local A = an_config(ARGV[12])
local ref_index = ARGV[13]
local max_attempts = tonumber(ARGV[14])
local submitted = #ARGV - 14
local owners_end = #KEYS - submitted

for i = 4, owners_end do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= id then
    return {'conflict', owner}
  end
end

local exists = redis.call('EXISTS', KEYS[1]) == 1
local seen = exists and redis.call('HGET', KEYS[1], attempt_key)
if seen then
  return {'exists', tonumber(seen)}
end
if retry and not exists then
  return {'unknown', 0}
end
if not retry and exists then
  -- The message is registered under this id by another send: the same parts, told again.
  return {'exists', 1}
end

if retry and tonumber(redis.call('HGET', KEYS[1], attempts_field) or 0) >= max_attempts then
  return {'too_many', max_attempts}
end
local n = redis.call('HINCRBY', KEYS[1], attempts_field, 1)
if n == 1 then
  redis.call('HSET', KEYS[1], meta_field, meta)
end
redis.call('HSET', KEYS[1], attempt_prefix .. n, attempt, attempt_key, n)
redis.call('EXPIRE', KEYS[1], ttl)
for i = 4, owners_end do
  redis.call('SET', KEYS[i], id, 'EX', ttl)
end
if A and ref_index ~= '' then
  redis.call('ZADD', ref_index, now, KEYS[1])
  an_keep(A, ref_index)
end
if A then
  for j = 1, submitted do
    local key, reg = KEYS[owners_end + j], cjson.decode(ARGV[14 + j])
    local raw = redis.call('GET', key)
    local ok, part = true, {history = {}}
    if raw then
      ok, part = pcall(cjson.decode, raw)
    end
    if ok and type(part) == 'table' then
      part.reg = reg
      redis.call('SET', key, cjson.encode(part), 'EX', ttl)
      an_submitted(A, reg)
      if part.fh then
        an_resolved(A, reg, tonumber(part.fe) or reg.t)
      end
    end
  end
  an_flush(A)
end
redis.call('ZADD', KEYS[2], deadline, id)
redis.call('ZADD', KEYS[3], now, id)
return {'created', n}
