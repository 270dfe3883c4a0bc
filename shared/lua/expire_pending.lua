-- Turn a pending connection whose deadline has passed into failed, once.
-- KEYS: 1 conn hash, 2 notification outbox list
-- ARGV: 1 now_ms, 2 changes channel, 3 comma-separated timestamp reason codes
-- Returns the failed reason, or false when nothing changed (not pending, or not yet due).
local conn = KEYS[1]
if redis.call('HGET', conn, 'state') ~= 'pending' then return false end
local deadline = tonumber(redis.call('HGET', conn, 'pending_deadline') or '0')
if deadline > tonumber(ARGV[1]) then return false end

local seen = cjson.decode(redis.call('HGET', conn, 'seen') or '{}')
local stamp = {}
for code in string.gmatch(ARGV[3], '[^,]+') do stamp[code] = true end
local total, stale, top, top_n = 0, 0, '', 0
for code, n in pairs(seen) do
  total = total + n
  if stamp[code] then stale = stale + n end
  if n > top_n then top, top_n = code, n end
end
local reason = 'deadline_no_events'
if total > 0 and stale == total then reason = 'deadline_stale_timestamps'
elseif total > 0 and stale == 0 then reason = 'deadline_bad_signatures'
elseif total > 0 then reason = 'deadline_rejected_deliveries' end

redis.call('HSET', conn, 'state', 'failed', 'reason', reason, 'failed_detail', top,
  'updated_at', ARGV[1], 'failed_at', ARGV[1])
local version = redis.call('HINCRBY', conn, 'version', 1)
local id = redis.call('HGET', conn, 'id')
redis.call('PUBLISH', ARGV[2], cjson.encode({id = id,
  account_id = redis.call('HGET', conn, 'account_id'), version = version, state = 'failed'}))
redis.call('RPUSH', KEYS[2], cjson.encode({id = 'evt_' .. id .. '_' .. version .. '_1', type = 'connection.failed',
  at = ARGV[1]}))
redis.call('LTRIM', KEYS[2], -100, -1)
return reason
