-- Fail a test window that saw no verified event before it closed, once (compare-and-set on its id).
-- KEYS: 1 conn hash, 2 notification outbox list
-- ARGV: 1 test id, 2 now_ms, 3 changes channel, 4 comma-separated timestamp reason codes
-- Returns the failed reason, or false when nothing changed (another test, already finished, not due).
local conn = KEYS[1]
local t = redis.call('HMGET', conn, 'test_id', 'test_state', 'test_expires_at', 'test_seen')
if t[1] ~= ARGV[1] or t[2] ~= 'waiting' then return false end
if tonumber(t[3] or '0') > tonumber(ARGV[2]) then return false end

local seen = cjson.decode(t[4] or '{}')
local stamp = {}
for code in string.gmatch(ARGV[4], '[^,]+') do stamp[code] = true end
local total, stale = 0, 0
for code, n in pairs(seen) do
  total = total + n
  if stamp[code] then stale = stale + n end
end
local reason = 'test_no_events'
if total > 0 and stale == total then reason = 'test_stale_timestamps'
elseif total > 0 and stale == 0 then reason = 'test_bad_signatures'
elseif total > 0 then reason = 'test_rejected_deliveries' end

redis.call('HSET', conn, 'test_state', 'failed', 'test_reason', reason, 'test_finished_at', ARGV[2],
  'updated_at', ARGV[2])
local version = redis.call('HINCRBY', conn, 'version', 1)
local id = redis.call('HGET', conn, 'id')
redis.call('RPUSH', KEYS[2], cjson.encode({id = 'evt_' .. id .. '_' .. version .. '_1', type = 'test.failed',
  at = ARGV[2]}))
redis.call('LTRIM', KEYS[2], -100, -1)
redis.call('PUBLISH', ARGV[3], cjson.encode({id = id,
  account_id = redis.call('HGET', conn, 'account_id'), version = version,
  state = redis.call('HGET', conn, 'state'), test = 'failed'}))
return reason
