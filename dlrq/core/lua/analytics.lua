-- Delivery analytics, counted inside the atomic calls that apply receipts and register sends
-- (this file is prepended to apply_receipts.lua and register.lua). Every name comes from the
-- caller, in one JSON argument (dlrq/core/analytics.py, keys.py):
-- {prefixes = {network, country, client_ref, err_code} (a bucket key is prefix .. hour),
--  caps = {<dimension> = {prefix of each hour's set of its values, most values an hour}} for the
--  dimensions whose values a sender chooses (network, client_ref, err_code), labels = {the set of
--  networks the Prometheus counters name, most of them}, ttl, sep, none, other, unknown,
--  final, err, cost, sub, res, lat (metric names), bounds (latency histogram), outcomes and
--  latency (the Prometheus counters' hashes), outcomes_final (the final statuses)}.
-- Counts are summed in the call and written by an_flush at its end: a batch's receipts mostly
-- share their hour and their networks, so a batch costs a few HINCRBYs, not a few per receipt.
-- Every write and read of a shared key is protected (redis.pcall): a key an operator replaced with
-- another type, or a sum that would overflow, costs that one count (tallied in A.errors), never
-- the call's other writes.

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
  A.members, A.full = {}, {}  -- capped values' sets: members known in this call, sets found full
  A.errors, A.error = 0, nil  -- protected calls that failed, and the last one's error
  return A
end

-- A protected call: its reply, or nil (counted) if the server refused it.
local function an_call(A, ...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then
    A.errors = A.errors + 1
    A.error = reply.err
    return nil
  end
  return reply
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
        an_call(A, 'HINCRBY', key, field, n)
      end
    end
  end
  for _, key in ipairs(A.expired) do
    an_call(A, 'EXPIRE', key, A.ttl)
  end
end

-- The value counted under `set` (a set of at most `max` members): itself among the first `max`
-- values, else (other). `look` only looks (a count taken back was made under the same value);
-- `expiring`: the set lives as long as analytics.
local function an_capped(A, set, max, value, look, expiring)
  local members = A.members[set]
  if members == nil then
    members = {}
    A.members[set] = members
  end
  if members[value] or an_call(A, 'SISMEMBER', set, value) == 1 then
    members[value] = true
    return value
  end
  if not look and not A.full[set] then
    if (an_call(A, 'SCARD', set) or max) < max then
      an_call(A, 'SADD', set, value)
      if expiring then
        an_keep(A, set)
      end
      members[value] = true
      return value
    end
    A.full[set] = true
  end
  return A.other
end

-- The value a dimension counts under in that hour: (none) for none; for a dimension whose values
-- the sender chooses, itself among the hour's first few (its cap), else (other).
local function an_value(A, dimension, hour, value, look)
  if value == nil or value == '' then
    return A.none
  end
  local cap = A.caps[dimension]
  if cap == nil then
    return value
  end
  return an_capped(A, cap[1] .. hour, cap[2], value, look, true)
end

-- Add n (negative to take back) to each metric under each dimension's value, in that hour
-- (a dimension whose value is false does not apply; err_code's is capped already).
local function an_count(A, hour, dims, metrics, n)
  for dimension, prefix in pairs(A.prefixes) do
    local value = dims[dimension]
    if value ~= false then
      if dimension ~= 'err_code' then
        value = an_value(A, dimension, hour, value, n < 0)
      end
      local key = prefix .. hour
      for _, metric in ipairs(metrics) do
        an_add(A, key, value .. A.sep .. metric[1], metric[2] * n)
      end
      an_keep(A, key)
    end
  end
end

-- The network the Prometheus counters name: one of the first few ever counted, else (other).
local function an_label(A, network)
  if network == nil or network == '' then
    return A.none
  end
  return an_capped(A, A.labels[1], A.labels[2], network, false, false)
end

-- A part's outcome: its deciding receipt's status, counted with its cost and err-code.
local function an_outcome(A, hour, receipt, n)
  local code = an_value(A, 'err_code', hour, receipt['err-code'], n < 0)
  local dims = {network = receipt['network-code'], country = receipt._country or A.unknown,
                client_ref = receipt['client-ref'], err_code = code}
  local metrics = {{A.final .. receipt.status, 1}, {A.cost, tonumber(receipt._cost) or 0}}
  if code ~= A.none and code ~= '0' then
    metrics[#metrics + 1] = {A.err .. code, 1}
  end
  an_count(A, hour, dims, metrics, n)
  if n > 0 then
    an_add(A, A.outcomes, an_label(A, receipt['network-code']) .. A.sep .. receipt.status, 1)
  end
end

-- A part's registration (analytics.py registered): {hour, time, network, country, client-ref}.
local REG_HOUR, REG_TIME, REG_NETWORK, REG_COUNTRY, REG_REF = 1, 2, 3, 4, 5

local function an_registered_dims(reg)
  return {network = reg[REG_NETWORK], country = reg[REG_COUNTRY], client_ref = reg[REG_REF], err_code = false}
end

-- A registered part counted as submitted, in its registration's hour.
local function an_submitted(A, reg)
  an_count(A, reg[REG_HOUR], an_registered_dims(reg), {{A.sub, 1}}, 1)
end

-- A registered part's first final receipt, at `epoch`: resolved, and its time since registration.
local function an_resolved(A, reg, epoch)
  local seconds = math.max(0, epoch - reg[REG_TIME])
  local bucket = #A.bounds
  for i, bound in ipairs(A.bounds) do
    if seconds <= bound then
      bucket = i - 1
      break
    end
  end
  an_count(A, reg[REG_HOUR], an_registered_dims(reg), {{A.res, 1}, {A.lat .. bucket, 1}}, 1)
  local network = an_label(A, reg[REG_NETWORK])
  an_add(A, A.latency, network .. A.sep .. bucket, 1)
  an_add(A, A.latency, network .. A.sep .. 'sum', math.floor(seconds * 1000))
end
