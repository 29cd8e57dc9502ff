-- Move deadlines from dlrq 0.1-0.2's sorted set into the lists of their buckets, in deadline order.
-- KEYS[1]: the old sorted set, KEYS[2]: the index of lists, KEYS[3...]: the lists, one per member.
-- ARGV: for each member: itself, its score (as read), its bucket, the bucket's start.
-- A member whose score changed since it was read (an older version registered it again) is left,
-- to be moved next time. Returns how many were moved.
local moved = 0
for i = 1, #ARGV, 4 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('RPUSH', KEYS[2 + (i + 3) / 4], ARGV[i])
    redis.call('ZADD', KEYS[2], ARGV[i + 3], ARGV[i + 2])
    moved = moved + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return moved
