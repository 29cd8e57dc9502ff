-- Part records, read and written (this file is put before apply_receipts.lua and register.lua).
-- The layout is dlrq/core/records.py's, whose names come in one JSON argument (records.lua_config):
-- {version, per = a receipt's own fields by position, codes = {name = short code} for the shared
-- fields most receipts carry}.
-- A part is stored as a MessagePack array: {version, s = {code = value} the fields its receipts
-- share (those of its first receipt), h = its receipts, each {own fields by position..., {code =
-- value} what differs from s (false: absent)}, fh, fe (hour and time of its first final receipt), g
-- (its registration, for analytics: analytics.lua's positions), o (the message it belongs to: its
-- logical id, or true when that is the part's own id)}. A trailing false is left out.
-- A record written by dlrq 0.1-0.2 ({history = [receipt fields...], reg, fh, fe}, JSON) is read
-- as well, and written in this layout the first time it changes.
-- In memory a part is {rows = as stored, entries = each receipt's fields by name (what the
-- status rules compare), s, fh, fe, g, o}.

local function rc_config(json)
  local R = cjson.decode(json)
  R.names = {}
  for name, code in pairs(R.codes) do
    R.names[code] = name
  end
  R.own = {}
  for i, name in ipairs(R.per) do
    R.own[name] = i
  end
  return R
end

-- Epoch seconds as Vonage writes message-timestamp ("2026-12-04 12:00:01"): the layout keeps that
-- form as a number (records.py compact_time), and the rules compare it as text.
local function rc_time(epoch)
  local days = math.floor(epoch / 86400)
  local second = epoch - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02d %02d:%02d:%02d', year, month, day, math.floor(second / 3600),
    math.floor(second % 3600 / 60), second % 60)
end

-- A receipt's fields by name, from its own fields (by position) and the fields it shares.
local function rc_entry(R, row, shared)
  local entry = {}
  for code, value in pairs(shared) do
    entry[R.names[code] or code] = value
  end
  local diff = row[#R.per + 1]
  if type(diff) == 'table' then
    for code, value in pairs(diff) do
      entry[R.names[code] or code] = value or nil
    end
  end
  for i, name in ipairs(R.per) do
    local value = row[i]
    if value then
      entry[name] = value
    end
  end
  local stamp = entry['message-timestamp']
  if type(stamp) == 'number' then
    entry['message-timestamp'] = rc_time(stamp)
  end
  if type(entry.scts) == 'number' then
    entry.scts = string.format('%d', entry.scts)
  end
  return entry
end

-- Add a receipt: own (its fields by position) and fields ({code = value}, the rest), stored as
-- what differs from the part's shared fields (its first receipt's). Returns the receipt by name.
local function rc_add(R, part, own, fields)
  local row = {}
  for i = 1, #R.per do
    row[i] = own[i] or false
  end
  if #part.rows == 0 and next(part.s) == nil then
    part.s = fields
  else
    local diff, any = {}, false
    for code, value in pairs(fields) do
      if part.s[code] ~= value then
        diff[code], any = value, true
      end
    end
    for code in pairs(part.s) do
      if fields[code] == nil then
        diff[code], any = false, true
      end
    end
    if any then
      row[#R.per + 1] = diff
    end
  end
  while #row > 1 and row[#row] == false do
    row[#row] = nil
  end
  local entry = rc_entry(R, row, part.s)
  part.rows[#part.rows + 1] = row
  part.entries[#part.entries + 1] = entry
  return entry
end

local function rc_empty()
  return {rows = {}, entries = {}, s = {}}
end

-- A 0.1-0.2 record (JSON), as a part: each receipt added as a new one would be.
local function rc_from_v1(R, raw)
  local ok, doc = pcall(cjson.decode, raw)
  if not ok then
    return nil, 'not valid JSON'
  end
  if type(doc) ~= 'table' or (doc.history ~= nil and type(doc.history) ~= 'table') then
    return nil, 'not a part record'
  end
  local part = rc_empty()
  part.fh, part.fe = doc.fh, doc.fe
  if type(doc.reg) == 'table' then
    part.g = {}
    for i, name in ipairs(R.v1.registered) do
      part.g[i] = doc.reg[name]
    end
  end
  for _, seen in ipairs(doc.history or {}) do
    if type(seen) ~= 'table' or type(seen.status) ~= 'string' then
      return nil, 'a receipt in its history is not a receipt'
    end
    local own, fields = {}, {}
    for name, value in pairs(seen) do
      local i = R.own[name]
      if i then
        own[i] = value
      else
        fields[R.codes[name] or name] = value
      end
    end
    rc_add(R, part, own, fields)
  end
  return part
end

-- A stored part record, or nil and what is wrong with it.
local function rc_decode(R, raw)
  if string.sub(raw, 1, 1) == '{' then
    return rc_from_v1(R, raw)
  end
  local ok, doc = pcall(cmsgpack.unpack, raw)
  if not ok or type(doc) ~= 'table' or doc[1] ~= R.version or type(doc[2] or {}) ~= 'table'
      or type(doc[3] or {}) ~= 'table' then
    return nil, 'not a part record'
  end
  local part = {s = doc[2] or {}, rows = doc[3] or {}, entries = {}, fh = doc[4] or nil, fe = doc[5] or nil,
                g = doc[6] or nil, o = doc[7] or nil}
  for i, row in ipairs(part.rows) do
    if type(row) ~= 'table' or type(row[1]) ~= 'string' then
      return nil, 'a receipt in its history is not a receipt'
    end
    part.entries[i] = rc_entry(R, row, part.s)
  end
  return part
end

-- The part at key: {part, size of its record}, {new part, 0} when there is none, or {nil, what is wrong}.
local function rc_load(R, key)
  local raw = redis.pcall('GET', key)
  if type(raw) == 'table' and raw.err then
    return nil, raw.err
  end
  if not raw then
    return rc_empty(), 0
  end
  local part, problem = rc_decode(R, raw)
  if not part then
    return nil, problem
  end
  return part, #raw
end

local function rc_trimmed(row)
  while #row > 1 and row[#row] == false do
    row[#row] = nil
  end
  return row
end

local function rc_encode(R, part)
  return cmsgpack.pack(rc_trimmed({R.version, part.s, part.rows, part.fh or false, part.fe or false, part.g or false,
                                   part.o or false}))
end

-- Write a part, kept `ttl` seconds, or longer if it was to live longer: a registered part (it says
-- which message it belongs to) lives at least as long as its message.
local function rc_store(R, key, part, ttl)
  if part.o then
    ttl = math.max(ttl, redis.call('TTL', key))
  end
  redis.call('SET', key, rc_encode(R, part), 'EX', ttl)
end

-- Messages. A registered message is stored as a MessagePack array: {version, m = {client-ref,
-- text, from} (by position, R.meta), a = its attempts, each {registered (epoch ms), deadline, {each
-- part by position (R.sent)}}, k = {first part id of a retry's send = its attempt number}, l = {event
-- id = alert JSON}}. One written by dlrq 0.1-0.2 is a hash (field names in R.v1), read as well and
-- written in this layout the first time it changes. In memory: {m, a, k, l, hash = true if it was one}.

local function rc_message_from_hash(R, fields)
  local msg = {a = {}, k = {}, l = {}, hash = true}
  local by = {}
  for i = 1, #fields, 2 do
    by[fields[i]] = fields[i + 1]
  end
  local meta = cjson.decode(by[R.v1.meta])
  local row = {}
  for i, name in ipairs(R.meta) do
    row[i] = meta[name] or false
  end
  msg.m = rc_trimmed(row)
  for n = 1, tonumber(by[R.v1.attempts]) do
    local attempt = cjson.decode(by[R.v1.attempt .. n])
    local parts = {}
    for j, sent in ipairs(attempt.parts) do
      local part = {}
      for i, name in ipairs(R.sent) do
        part[i] = sent[name] or false
      end
      parts[j] = rc_trimmed(part)
    end
    msg.a[n] = {attempt.registered_at, attempt.deadline, parts}
  end
  local key_prefix, alert_prefix = R.v1.key, R.v1.alert
  for field, value in pairs(by) do
    if string.sub(field, 1, #key_prefix) == key_prefix then
      msg.k[string.sub(field, #key_prefix + 1)] = tonumber(value)
    elseif string.sub(field, 1, #alert_prefix) == alert_prefix then
      msg.l[string.sub(field, #alert_prefix + 1)] = value
    end
  end
  return msg
end

-- The message at key: a message, false if there is none, or nil and what is wrong with it.
local function rc_message(R, key)
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then
    return false
  end
  if kind == 'hash' then
    local ok, msg = pcall(rc_message_from_hash, R, redis.call('HGETALL', key))
    if not ok then
      return nil, 'not a message record'
    end
    return msg
  end
  if kind ~= 'string' then
    return nil, 'not a message record'
  end
  local ok, doc = pcall(cmsgpack.unpack, redis.call('GET', key))
  if not ok or type(doc) ~= 'table' or doc[1] ~= R.version or type(doc[3]) ~= 'table' then
    return nil, 'not a message record'
  end
  return {m = doc[2] or {}, a = doc[3], k = doc[4] or {}, l = doc[5] or {}}
end

-- Write a message, kept `ttl` seconds (nil: as long as it was to be kept).
local function rc_message_store(R, key, msg, ttl)
  local packed = cmsgpack.pack(rc_trimmed({R.version, msg.m, msg.a, next(msg.k) and msg.k or false,
                                           next(msg.l) and msg.l or false}))
  if ttl == nil then
    local left = redis.call('PTTL', key)
    if msg.hash then
      redis.call('DEL', key)
    end
    if left > 0 then
      redis.call('SET', key, packed, 'PX', left)
    else
      redis.call('SET', key, packed)
    end
    return
  end
  if msg.hash then
    redis.call('DEL', key)
  end
  redis.call('SET', key, packed, 'EX', ttl)
end
