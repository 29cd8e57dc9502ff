-- Run the commands RQ recorded for one enqueue as one atomic call with one reply.
-- ARGV: for each command, its argument count followed by its arguments.
-- Returns each command's reply, in order.
return run_commands(1)
