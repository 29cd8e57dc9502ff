-- Run the commands passed from ARGV[first] on, each as its argument count followed by its
-- arguments (what RQ recorded for a job: see jobs.flatten); return each one's reply, in order.
local function run_commands(first)
  local replies = {}
  local i = first
  while i <= #ARGV do
    local n = tonumber(ARGV[i])
    replies[#replies + 1] = redis.call(unpack(ARGV, i + 1, i + n))
    i = i + n + 1
  end
  return replies
end
