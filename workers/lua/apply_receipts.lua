-- Apply a batch of receipts atomically.
-- KEYS[i]: the part key of receipt i.
-- ARGV[1]: part TTL in seconds. ARGV[2]: prefix of the failure-rate counters, ARGV[3]: the
-- current bucket, ARGV[4]: buckets in the window, ARGV[5]: the counters' TTL.
-- ARGV[6]: the counters hash, ARGV[7]: this moment's throughput hash, ARGV[8]: its TTL.
-- ARGV[8 + i]: receipt i's history entry (JSON).
-- A receipt equal to one the part already holds (same status, err-code, scts,
-- message-timestamp) is a resend: it changes nothing. A new final receipt with a
-- network-code is counted in <prefix><network>:<bucket> (fields total, failed).
-- The counters count new receipts, resends, the batch, and each change of a part's
-- status (status:<new status>), by the contract's rules as ingest/status.py has them.
-- Returns {applied, windows}: applied holds 1 for each new receipt and 0 for each
-- resend, in order, so running a batch again changes nothing; windows holds, for each
-- network a final receipt of the batch came from, its name, total and failed over the window.
local ttl, prefix, bucket, buckets = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local counts_ttl = tonumber(ARGV[5])
local counters, throughput, throughput_ttl = ARGV[6], ARGV[7], tonumber(ARGV[8])
local final = {delivered = true, expired = true, failed = true, rejected = true, unknown = true}
local failed = {expired = true, failed = true, rejected = true}
local rank = {accepted = 1, buffered = 2, unknown = 3, delivered = 4, expired = 4, failed = 4, rejected = 4}
local applied = {}
local networks = {}
local new, changes = 0, {}

local function same(a, b)
  return a.status == b.status
    and (a['err-code'] or '') == (b['err-code'] or '')
    and (a.scts or '') == (b.scts or '')
    and (a['message-timestamp'] or '') == (b['message-timestamp'] or '')
end

-- Whether a receipt arriving after b decides over it: a higher rank, or the same rank and
-- an event not earlier (the later arrival wins ties).
local function decides(a, b)
  if rank[a.status] ~= rank[b.status] then
    return rank[a.status] > rank[b.status]
  end
  local am, bm = a['message-timestamp'] or '', b['message-timestamp'] or ''
  if am ~= bm then
    return am > bm
  end
  return (a.scts or '') >= (b.scts or '')
end

for i, key in ipairs(KEYS) do
  local entry = cjson.decode(ARGV[i + 8])
  local network = entry['network-code']
  local counted = final[entry.status] and type(network) == 'string' and network ~= ''
  if counted and not networks[network] then
    networks[network] = true
    networks[#networks + 1] = network
  end
  local raw = redis.call('GET', key)
  local part = raw and cjson.decode(raw) or {}
  local history = part.history or {}
  local resend, deciding = false, nil
  for _, seen in ipairs(history) do
    if same(seen, entry) then
      resend = true
      break
    end
    if rank[seen.status] and (deciding == nil or decides(seen, deciding)) then
      deciding = seen
    end
  end
  if resend then
    applied[i] = 0
  else
    history[#history + 1] = entry
    part.history = history
    redis.call('SET', key, cjson.encode(part), 'EX', ttl)
    applied[i] = 1
    new = new + 1
    if rank[entry.status] and (deciding == nil or (decides(entry, deciding) and entry.status ~= deciding.status)) then
      changes[entry.status] = (changes[entry.status] or 0) + 1
    end
    if counted then
      local counts = prefix .. network .. ':' .. bucket
      redis.call('HINCRBY', counts, 'total', 1)
      if failed[entry.status] then
        redis.call('HINCRBY', counts, 'failed', 1)
      end
      redis.call('EXPIRE', counts, counts_ttl)
    end
  end
end

redis.call('HINCRBY', counters, 'batches', 1)
redis.call('HINCRBY', counters, 'receipts:new', new)
redis.call('HINCRBY', counters, 'receipts:resend', #KEYS - new)
for status, n in pairs(changes) do
  redis.call('HINCRBY', counters, 'status:' .. status, n)
end
redis.call('HINCRBY', throughput, 'new', new)
redis.call('HINCRBY', throughput, 'resend', #KEYS - new)
redis.call('EXPIRE', throughput, throughput_ttl)

local windows = {}
for _, network in ipairs(networks) do
  local total, failures = 0, 0
  for b = bucket - buckets + 1, bucket do
    local counts = redis.call('HMGET', prefix .. network .. ':' .. b, 'total', 'failed')
    total = total + (tonumber(counts[1]) or 0)
    failures = failures + (tonumber(counts[2]) or 0)
  end
  windows[#windows + 1] = network
  windows[#windows + 1] = total
  windows[#windows + 1] = failures
end
return {applied, windows}
