-- Read message records, whatever layout wrote them, and (optionally) part records, in one call.
-- KEYS[1..n]: message records; KEYS[n+1...]: part records. ARGV[1]: n.
-- Returns each key's value in order: a message as its MessagePack string, or as the fields and
-- values of a dlrq 0.1-0.2 hash; a part as stored; false for none (or a key of another type).
local n = tonumber(ARGV[1])
local found = {}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key).ok
  if kind == 'string' then
    found[i] = redis.call('GET', key)
  elseif kind == 'hash' and i <= n then
    found[i] = redis.call('HGETALL', key)
  else
    found[i] = false
  end
end
return found
