-- Delete a lock only if it is still held by the owner we judged dead (KEYS[1] the lock, ARGV[1] the owner).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
