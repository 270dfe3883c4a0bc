-- Hold one rejected request of a connection (to verify it again after a fix), within its bounds.
-- KEYS: 1 held ids (sorted set, by receipt ms), 2 held requests (hash id -> sealed request),
--       3 what may be shown of them (hash id -> JSON with its "size", and "stored": the bytes the bounds count)
-- ARGV: 1 id, 2 received at (ms), 3 sealed request, 4 shown JSON, 5 stored bytes (sealed, and shown),
--       6 most requests held, 7 most bytes held, 8 longest held (ms)
-- Drops what is older than the longest held time, then the oldest until both bounds hold again.
-- Returns {held (1/0), dropped id, its size, why, ...}; why: expired | connection_limit | too_large.
local ids, data, meta = KEYS[1], KEYS[2], KEYS[3]
local at, size = tonumber(ARGV[2]), tonumber(ARGV[5])
local max_n, max_bytes, max_age = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local out = {0}

-- What a held request counts: its stored bytes ("size" for one held before they were counted).
local function stored(shown)
  local s = cjson.decode(shown)
  return tonumber(s.stored or s.size) or 0
end

local function drop(id, why)
  local shown = redis.call('HGET', meta, id)
  local n = 0
  if shown then n = stored(shown) end
  redis.call('ZREM', ids, id)
  redis.call('HDEL', data, id)
  redis.call('HDEL', meta, id)
  out[#out + 1] = id
  out[#out + 1] = n
  out[#out + 1] = why
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', ids, '-inf', at - max_age)) do drop(id, 'expired') end
if size > max_bytes or max_n < 1 then
  out[#out + 1] = ARGV[1]
  out[#out + 1] = 0
  out[#out + 1] = 'too_large'
  return out
end
redis.call('ZADD', ids, at, ARGV[1])
redis.call('HSET', data, ARGV[1], ARGV[3])
redis.call('HSET', meta, ARGV[1], ARGV[4])
out[1] = 1

local total = 0
for _, shown in ipairs(redis.call('HVALS', meta)) do total = total + stored(shown) end
while redis.call('ZCARD', ids) > max_n or total > max_bytes do
  local oldest = redis.call('ZRANGE', ids, 0, 0)[1]
  if not oldest then break end
  local before = #out
  drop(oldest, 'connection_limit')
  total = total - out[before + 2]
end
redis.call('PEXPIRE', ids, max_age)
redis.call('PEXPIRE', data, max_age)
redis.call('PEXPIRE', meta, max_age)
return out
