-- Apply a batch of receipts atomically: all of what is valid, none of what is not.
-- KEYS[1..n]: the part key of each receipt; KEYS[n+1]: the counters hash; KEYS[n+2], KEYS[n+3]:
-- this moment's throughput hashes (10 s and 5 min); KEYS[n+4..n+3+m]: the 0.1-0.2 owner keys of
-- the parts whose receipts failed (read only, for a part whose record does not name its message:
-- the worker reacts to them next); KEYS[n+4+m...]: the failure-rate window's buckets, the current
-- one last.
-- ARGV[1]: n. ARGV[2]: part TTL, ARGV[3]: the window buckets' TTL, ARGV[4]: the throughput
-- hashes' TTL. ARGV[5]: the status ranks (JSON). ARGV[6]: most receipts a part keeps, ARGV[7]:
-- most bytes of a part's record. ARGV[8..14]: field names: batches, new receipts, resends,
-- dropped receipts (counters), prefix of status changes (counters), new, resend (throughput).
-- ARGV[15]: the analytics' names (JSON, see analytics.lua; '' when they are off). ARGV[16]: for
-- each part whose receipt failed, the place (1..n) of one of its receipts (JSON: m of them).
-- ARGV[17]: the part records' layout (JSON, see records.lua). ARGV[18]: what is known of each
-- receipt (JSON, one array each, in order: its network's fields in the window buckets (final
-- receipts, failed ones; '' when it does not count), 1 if it failed (else 0), when it was received
-- (epoch seconds, and its analytics hour), the index of its client-ref ('' without one: a part
-- heard of first is added to it) and its part's id as the index holds it).
-- ARGV[18 + i]: receipt i as its part keeps it (JSON: its own fields by position, then the others
-- by code; records.py receipt_row).
--
-- Every part record is read and checked before anything is written: a record that is not a
-- part (not one records.lua reads, another type of key) is left alone and its receipts are
-- reported, so one bad record can neither stop the batch half-applied nor be overwritten.
-- A receipt equal to one the part already holds (same status, err-code, scts,
-- message-timestamp, and the Messages API's own status word) is a resend: it changes nothing.
-- The per-part caps bound the noise, not the outcome: a new receipt that would not change the
-- part's status is dropped (counted) once the part holds max_receipts receipts or half of
-- max_bytes; one that changes it is kept up to max_bytes, so that a flood of forged receipts
-- cannot crowd out the genuine one that decides. The counters count new receipts, resends,
-- dropped ones, the batch, and each change of a part's status by the contract's rules.
-- The part records are written first: the server refuses a script's first write when it is out
-- of memory (nothing is written then), never a later one. Every other write and read touches
-- keys that other code (or an operator) may have given another type, or sums that could
-- overflow: each is protected, and a refusal costs that one count, reported, never the batch.
-- Returns {outcomes, windows, bad, owners, errors}: outcomes holds, in order, 1 for each new receipt, 0 for a
-- resend, 2 for a dropped one and -1 for one whose part record is bad, so running a batch again
-- changes nothing; windows holds, for each network a final receipt of the batch came from, its
-- final-receipts field, then its totals over the window; bad holds, for each bad record, the
-- index of its first receipt and what is wrong with it; owners holds the message each failed part
-- belongs to ('' for none, 1 for itself), as its record (or a 0.1-0.2 owner key) says; errors holds how
-- many protected calls the server refused, and the last one's error ('' for none).
local n = tonumber(ARGV[1])
local ttl, window_ttl, throughput_ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local rank = cjson.decode(ARGV[5])
local max_receipts, max_bytes = tonumber(ARGV[6]), tonumber(ARGV[7])
local f_batches, f_new, f_resend, f_dropped, f_status, f_rate_new, f_rate_resend = unpack(ARGV, 8, 14)
local A = an_config(ARGV[15])
local failed_at = cjson.decode(ARGV[16])
local m = #failed_at
local R = rc_config(ARGV[17])
local about = cjson.decode(ARGV[18])
local counters = KEYS[n + 1]
local current = KEYS[#KEYS]

local errors, last_error = 0, ''
-- A write or read of a shared key, protected: its reply, or nil (counted) if refused.
local function shared(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then
    errors = errors + 1
    last_error = reply.err
    return nil
  end
  return reply
end

local function same(a, b)
  return a.status == b.status
    and (a['err-code'] or '') == (b['err-code'] or '')
    and (a.scts or '') == (b.scts or '')
    and (a['message-timestamp'] or '') == (b['message-timestamp'] or '')
    and (a['messages-status'] or '') == (b['messages-status'] or '')
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

local parts, sizes, bad = {}, {}, {}
for i = 1, n do
  local key = KEYS[i]
  if parts[key] == nil and sizes[key] == nil then
    local part, size = rc_load(R, key)
    if part then
      parts[key], sizes[key] = part, size
    else
      sizes[key] = false
      bad[#bad + 1] = i - 1
      bad[#bad + 1] = size
    end
  end
end

local outcomes, networks, failed_fields, dirty, indexed = {}, {}, {}, {}, {}
-- The batch's new final receipts by network field (counted once per batch, not once per receipt).
local finals, failures = {}, {}
local new, dropped, refused, changes = 0, 0, 0, {}
local noise_bytes = math.floor(max_bytes / 2)
for i = 1, n do
  local key, raw = KEYS[i], ARGV[18 + i]
  local part = parts[key]
  local total_field, failed_field, failed, received, hour, ref, member = unpack(about[i])
  if total_field ~= '' and not failed_fields[total_field] then
    failed_fields[total_field] = failed_field
    networks[#networks + 1] = total_field
  end
  if not part then
    outcomes[i] = -1
    refused = refused + 1
  else
    local arrived = cjson.decode(raw)
    local fields = table.remove(arrived)
    local entry = rc_entry(R, arrived, fields)
    local history = part.entries
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
    local decides_now = not resend and rank[entry.status] and (deciding == nil or decides(entry, deciding))
    local changes_status = decides_now and (deciding == nil or entry.status ~= deciding.status)
    local size = sizes[key] + #raw + 1
    if resend then
      outcomes[i] = 0
    elseif size > max_bytes or (not changes_status and (#history >= max_receipts or size > noise_bytes)) then
      outcomes[i] = 2
      dropped = dropped + 1
    else
      rc_add(R, part, arrived, fields)
      sizes[key] = size
      dirty[key] = true
      outcomes[i] = 1
      new = new + 1
      if A and #history == 1 and ref ~= '' and not part.g then
        -- A part nobody registered, first heard of: found by its client-ref (a registered one is
        -- found through its message, indexed when it was registered).
        indexed[#indexed + 1] = {ref, math.floor(received), member}
      end
      if changes_status then
        changes[entry.status] = (changes[entry.status] or 0) + 1
      end
      -- Analytics: a part's outcome counts once, in the hour of its first final receipt, under the
      -- receipt that decides it: moved (in that hour) when another one comes to decide.
      if A and decides_now and A.is_final[entry.status] then
        if deciding ~= nil and A.is_final[deciding.status] and part.fh then
          an_outcome(A, part.fh, deciding, -1)
        else
          part.fh, part.fe = hour, received
          if type(part.g) == 'table' then
            an_resolved(A, part.g, part.fe)
          end
        end
        an_outcome(A, part.fh, entry, 1)
      end
      if total_field ~= '' then
        finals[total_field] = (finals[total_field] or 0) + 1
        failures[failed_field] = (failures[failed_field] or 0) + failed
      end
    end
  end
end

for key in pairs(dirty) do
  rc_store(R, key, parts[key], ttl)
end
local trimmed = {}
for _, index in ipairs(indexed) do
  shared('ZADD', index[1], index[2], index[3])
  an_keep(A, index[1])
  -- The index finds parts: none outlives its part (the key itself lives as long as the analytics).
  if not trimmed[index[1]] then
    trimmed[index[1]] = true
    shared('ZREMRANGEBYSCORE', index[1], '-inf', '(' .. (index[2] - ttl))
  end
end
if next(finals) then
  for field, count in pairs(finals) do
    shared('HINCRBY', current, field, count)
  end
  for field, count in pairs(failures) do
    if count > 0 then
      shared('HINCRBY', current, field, count)
    end
  end
  shared('EXPIRE', current, window_ttl)
end
if A then
  an_flush(A)
  errors = errors + A.errors
  last_error = A.error or last_error
end

shared('HINCRBY', counters, f_batches, 1)
shared('HINCRBY', counters, f_new, new)
shared('HINCRBY', counters, f_resend, n - new - dropped - refused)
if dropped > 0 then
  shared('HINCRBY', counters, f_dropped, dropped)
end
for status, count in pairs(changes) do
  shared('HINCRBY', counters, f_status .. status, count)
end
for t = n + 2, n + 3 do
  shared('HINCRBY', KEYS[t], f_rate_new, new)
  shared('HINCRBY', KEYS[t], f_rate_resend, n - new - dropped - refused)
  shared('EXPIRE', KEYS[t], throughput_ttl)
end

local windows = {}
for _, total_field in ipairs(networks) do
  local total, failures = 0, 0
  for b = n + 4 + m, #KEYS do
    local counts = shared('HMGET', KEYS[b], total_field, failed_fields[total_field]) or {}
    total = total + (tonumber(counts[1]) or 0)
    failures = failures + (tonumber(counts[2]) or 0)
  end
  windows[#windows + 1] = total_field
  windows[#windows + 1] = total
  windows[#windows + 1] = failures
end
local owners = {}
for j = 1, m do
  local part = parts[KEYS[failed_at[j]]]
  local owner = part and part.o or shared('GET', KEYS[n + 3 + j])
  owners[#owners + 1] = (owner == true and 1) or (type(owner) == 'string' and owner) or ''
end
return {outcomes, windows, bad, owners, {errors, last_error}}
