-- Apply a batch of receipts atomically.
-- KEYS[1..n]: the part key of each receipt; KEYS[n+1]: the counters hash; KEYS[n+2]: this
-- moment's throughput hash; KEYS[n+3...]: the failure-rate window's buckets, the current one last.
-- ARGV[1]: n. ARGV[2]: part TTL, ARGV[3]: the window buckets' TTL, ARGV[4]: the throughput
-- hash's TTL. ARGV[5]: the status ranks (JSON). ARGV[6..11]: field names: batches, new
-- receipts, resends (counters), prefix of status changes (counters), new, resend (throughput).
-- ARGV[12 + 4(i-1) ...]: receipt i's history entry (JSON), then its network's fields in the
-- window buckets (final receipts, failed ones; '' when it does not count), then '1' if it failed.
-- A receipt equal to one the part already holds (same status, err-code, scts,
-- message-timestamp) is a resend: it changes nothing. The counters count new receipts,
-- resends, the batch, and each change of a part's status by the contract's rules.
-- Returns {applied, windows}: applied holds 1 for each new receipt and 0 for each resend,
-- in order, so running a batch again changes nothing; windows holds, for each network a final
-- receipt of the batch came from, its final-receipts field, then its totals over the window.
local n = tonumber(ARGV[1])
local ttl, window_ttl, throughput_ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local rank = cjson.decode(ARGV[5])
local f_batches, f_new, f_resend, f_status, f_rate_new, f_rate_resend = unpack(ARGV, 6, 11)
local counters, throughput = KEYS[n + 1], KEYS[n + 2]
local current = KEYS[#KEYS]
local applied, networks, failed_fields = {}, {}, {}
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

for i = 1, n do
  local key, base = KEYS[i], 12 + 4 * (i - 1)
  local entry, total_field, failed_field = cjson.decode(ARGV[base]), ARGV[base + 1], ARGV[base + 2]
  if total_field ~= '' and not failed_fields[total_field] then
    failed_fields[total_field] = failed_field
    networks[#networks + 1] = total_field
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
    if total_field ~= '' then
      redis.call('HINCRBY', current, total_field, 1)
      if ARGV[base + 3] == '1' then
        redis.call('HINCRBY', current, failed_field, 1)
      end
      redis.call('EXPIRE', current, window_ttl)
    end
  end
end

redis.call('HINCRBY', counters, f_batches, 1)
redis.call('HINCRBY', counters, f_new, new)
redis.call('HINCRBY', counters, f_resend, n - new)
for status, count in pairs(changes) do
  redis.call('HINCRBY', counters, f_status .. status, count)
end
redis.call('HINCRBY', throughput, f_rate_new, new)
redis.call('HINCRBY', throughput, f_rate_resend, n - new)
redis.call('EXPIRE', throughput, throughput_ttl)

local windows = {}
for _, total_field in ipairs(networks) do
  local total, failures = 0, 0
  for b = n + 3, #KEYS do
    local counts = redis.call('HMGET', KEYS[b], total_field, failed_fields[total_field])
    total = total + (tonumber(counts[1]) or 0)
    failures = failures + (tonumber(counts[2]) or 0)
  end
  windows[#windows + 1] = total_field
  windows[#windows + 1] = total
  windows[#windows + 1] = failures
end
return {applied, windows}
