-- Record that a connected connection has gone silent (no verified event for longer than its expected
-- interval, or than its learned rhythm allows), once per silence: the notification goes to the outbox
-- in the same step.
-- KEYS: 1 conn hash, 2 notification outbox list
-- ARGV: 1 now_ms
-- Returns the time it turns (or turned) silent in ms, 0 when it cannot (not connected, no interval, no
-- learned limit): a time after now means it is not silent yet (a newer event arrived).
local conn = KEYS[1]
local h = redis.call('HMGET', conn, 'state', 'last_event_at', 'expected_interval_s', 'silent_notified_for', 'id',
  'quiet_after_ms')
-- The shorter of the expected interval and the learned limit (apply_delivery.lua has the same rule).
local expected, learned = (tonumber(h[3] or '0') or 0) * 1000, tonumber(h[6] or '0') or 0
local limit = math.max(expected, learned)
if expected > 0 and learned > 0 then limit = math.min(expected, learned) end
local last_event = tonumber(h[2] or '0') or 0
if h[1] ~= 'connected' or limit <= 0 or last_event <= 0 then return 0 end
local silent_at = last_event + limit
if silent_at > tonumber(ARGV[1]) or h[4] == h[2] then return silent_at end
redis.call('HSET', conn, 'silent_notified_for', h[2])
local version = redis.call('HGET', conn, 'version') or '0'
redis.call('RPUSH', KEYS[2], cjson.encode({id = 'evt_' .. h[5] .. '_' .. version .. '_silent_' .. h[2],
  type = 'connection.silent', at = tostring(silent_at)}))
redis.call('LTRIM', KEYS[2], -100, -1)
return silent_at
