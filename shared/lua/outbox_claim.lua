-- Claim one connection of the outbox index for relaying: only when it is due, by moving it to a
-- lease's end (another relay skips it meanwhile; a relay that dies leaves it due again after the lease).
-- KEYS: 1 outbox index (sorted set)
-- ARGV: 1 connection id, 2 now_ms, 3 lease end ms
-- Returns 1 when claimed, 0 when absent or not due.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
