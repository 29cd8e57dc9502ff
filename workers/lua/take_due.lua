-- Take judged members off a sorted set of due messages, each only if its score is still the one it
-- was judged at: a message registered again meanwhile (a retry moves its deadline, or makes it due
-- for a new evaluation) stays, to be judged again.
-- KEYS[1]: the sorted set. ARGV: member, score, member, score, ...
-- Returns how many were taken off.
local taken = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    taken = taken + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return taken
