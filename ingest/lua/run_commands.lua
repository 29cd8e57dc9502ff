-- Run the commands RQ recorded for one enqueue as one atomic call with one reply.
-- ARGV: for each command, its argument count followed by its arguments.
-- Returns each command's reply, in order.
local replies = {}
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  replies[#replies + 1] = redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return replies
