-- Move one connection between the per-state counters, atomically (one key, so one cluster slot).
-- KEYS: 1 state counts hash
-- ARGV: 1 from state ('' for a creation), 2 to state
-- Returns the new count of the to state.
if ARGV[1] ~= '' then redis.call('HINCRBY', KEYS[1], ARGV[1], -1) end
return redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
