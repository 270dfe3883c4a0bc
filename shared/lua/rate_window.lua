-- Count one attempt in a fixed window; the window starts with its first attempt.
-- KEYS: 1 the window's counter
-- ARGV: 1 window length ms
-- Returns {attempts in this window including this one, ms until the window ends}.
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
