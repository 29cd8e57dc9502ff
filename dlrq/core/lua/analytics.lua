-- Delivery analytics, counted inside the atomic calls that apply receipts and register sends
-- (this file is prepended to apply_receipts.lua and register.lua). Every name comes from the
-- caller, in one JSON argument (dlrq/core/analytics.py, keys.py):
-- {prefixes = {network, country, client_ref, err_code} (a bucket key is prefix .. hour),
--  refs (prefix of each hour's set of client-refs), max_refs, ttl, sep, none, other, unknown,
--  final, err, cost, sub, res, lat (metric names), bounds (latency histogram), outcomes and
--  latency (the Prometheus counters' hashes), outcomes_final (the final statuses)}.
-- Counts are summed in the call and written by an_flush at its end: a batch's receipts mostly
-- share their hour and their networks, so a batch costs a few HINCRBYs, not a few per receipt.

local function an_config(json)
  if json == '' then
    return nil
  end
  local A = cjson.decode(json)
  A.is_final = {}
  for _, status in ipairs(A.outcomes_final) do
    A.is_final[status] = true
  end
  A.sums, A.summed = {}, {}  -- key -> field -> count, and the keys in the order first counted
  A.expiring, A.expired = {}, {}  -- keys kept as long as analytics, and that order
  A.members, A.full = {}, {}  -- client-ref sets: members known in this call, sets found full
  return A
end

-- Let a key live as long as analytics (once per call, in an_flush).
local function an_keep(A, key)
  if not A.expiring[key] then
    A.expiring[key] = true
    A.expired[#A.expired + 1] = key
  end
end

local function an_add(A, key, field, n)
  local fields = A.sums[key]
  if fields == nil then
    fields = {}
    A.sums[key] = fields
    A.summed[#A.summed + 1] = key
  end
  fields[field] = (fields[field] or 0) + n
end

-- Write what the call counted.
local function an_flush(A)
  for _, key in ipairs(A.summed) do
    for field, n in pairs(A.sums[key]) do
      if n ~= 0 then
        redis.call('HINCRBY', key, field, n)
      end
    end
  end
  for _, key in ipairs(A.expired) do
    redis.call('EXPIRE', key, A.ttl)
  end
end

-- The value a client-ref counts under in that hour: itself among the first max_refs of the hour,
-- else (other). `look` only looks (a count taken back was made under the same value).
local function an_ref(A, hour, ref, look)
  if ref == nil or ref == '' then
    return A.none
  end
  local set = A.refs .. hour
  local members = A.members[set]
  if members == nil then
    members = {}
    A.members[set] = members
  end
  if members[ref] or redis.call('SISMEMBER', set, ref) == 1 then
    members[ref] = true
    return ref
  end
  if not look and not A.full[set] then
    if redis.call('SCARD', set) < A.max_refs then
      redis.call('SADD', set, ref)
      an_keep(A, set)
      members[ref] = true
      return ref
    end
    A.full[set] = true
  end
  return A.other
end

-- Add n (negative to take back) to each metric under each dimension's value, in that hour
-- (a dimension whose value is false does not apply).
local function an_count(A, hour, dims, metrics, n)
  for dimension, prefix in pairs(A.prefixes) do
    local value = dims[dimension]
    if value ~= false then
      if dimension == 'client_ref' then
        value = an_ref(A, hour, value, n < 0)
      elseif value == nil or value == '' then
        value = A.none
      end
      local key = prefix .. hour
      for _, metric in ipairs(metrics) do
        an_add(A, key, value .. A.sep .. metric[1], metric[2] * n)
      end
      an_keep(A, key)
    end
  end
end

-- A part's outcome: its deciding receipt's status, counted with its cost and err-code.
local function an_outcome(A, hour, receipt, n)
  local dims = {network = receipt['network-code'], country = receipt._country or A.unknown,
                client_ref = receipt['client-ref'], err_code = receipt['err-code']}
  local metrics = {{A.final .. receipt.status, 1}, {A.cost, tonumber(receipt._cost) or 0}}
  local code = receipt['err-code']
  if code ~= nil and code ~= '' and code ~= '0' then
    metrics[#metrics + 1] = {A.err .. code, 1}
  end
  an_count(A, hour, dims, metrics, n)
  if n > 0 then
    an_add(A, A.outcomes, (receipt['network-code'] or A.none) .. A.sep .. receipt.status, 1)
  end
end

-- A registered part counted as submitted, in its registration's hour.
local function an_submitted(A, reg)
  an_count(A, reg.h, {network = reg.n, country = reg.c, client_ref = reg.r, err_code = false}, {{A.sub, 1}}, 1)
end

-- A registered part's first final receipt, at `epoch`: resolved, and its time since registration.
local function an_resolved(A, reg, epoch)
  local seconds = math.max(0, epoch - reg.t)
  local bucket = #A.bounds
  for i, bound in ipairs(A.bounds) do
    if seconds <= bound then
      bucket = i - 1
      break
    end
  end
  local dims = {network = reg.n, country = reg.c, client_ref = reg.r, err_code = false}
  an_count(A, reg.h, dims, {{A.res, 1}, {A.lat .. bucket, 1}}, 1)
  local network = (reg.n ~= nil and reg.n ~= '') and reg.n or A.none
  an_add(A, A.latency, network .. A.sep .. bucket, 1)
  an_add(A, A.latency, network .. A.sep .. 'sum', math.floor(seconds * 1000))
end
