-- Take judged messages off the head of a deadline list, and the list off the index once it is empty,
-- atomically: a registration adding to the list meanwhile (it only appends) keeps both.
-- KEYS[1]: the list, KEYS[2]: the index of lists. ARGV[1]: how many to take, ARGV[2]: the list's
-- member in the index.
-- Returns how many are left in the list.
if tonumber(ARGV[1]) > 0 then
  redis.call('LPOP', KEYS[1], ARGV[1])
end
local left = redis.call('LLEN', KEYS[1])
if left == 0 then
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return left
