-- Put a job its worker could not run back on its queue, if this call wins it: the claim and the
-- requeue are one atomic call. As two calls, a worker killed between them, or a write refused
-- (maxmemory) after the claim, left the job in no list at all: its acknowledged receipts lost.
-- The claim is the first write, and removes memory, so a server at maxmemory lets the rest run.
-- KEYS[1]: where the job is held: its queue's intermediate list, or its started registry.
-- ARGV[1]: 'list' or 'registry'; ARGV[2]: the member to remove (the job id in the list, its run
-- in the registry); ARGV[3...]: the commands that requeue it, each as its argument count then
-- its arguments. Returns 1 if requeued, 0 if another caller had won it (nothing is written).
local removed
if ARGV[1] == 'list' then
  removed = redis.call('LREM', KEYS[1], 1, ARGV[2])
else
  removed = redis.call('ZREM', KEYS[1], ARGV[2])
end
if removed == 0 then
  return 0
end
run_commands(3)
return 1
