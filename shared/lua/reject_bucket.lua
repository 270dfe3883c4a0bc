-- A token bucket per connection for *rejected* deliveries: take one token or say how long to wait.
-- KEYS: 1 bucket hash (fields: tokens, at_ms)
-- ARGV: 1 now_ms, 2 capacity (burst), 3 refill per second, 4 key ttl ms
-- Returns {1, 0} when a token was taken, {0, ms until the next token} when the bucket is empty.
-- The time comes from the caller, so every replica of the receiver shares one bucket.
local key = KEYS[1]
local now, capacity, rate, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local state = redis.call('HMGET', key, 'tokens', 'at_ms')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or at == nil then tokens, at = capacity, now end
if now > at then tokens = math.min(capacity, tokens + (now - at) * rate / 1000) end
if tokens < 1 then
  local wait = math.ceil((1 - tokens) * 1000 / rate)
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at_ms', math.max(now, at))
  redis.call('PEXPIRE', key, ttl)
  return {0, wait}
end
redis.call('HSET', key, 'tokens', tostring(tokens - 1), 'at_ms', math.max(now, at))
redis.call('PEXPIRE', key, ttl)
return {1, 0}
