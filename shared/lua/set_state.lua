-- Reconnect (back to pending) or disconnect a connection, atomically, publishing the change.
-- KEYS: 1 conn hash, 2 notification outbox list
-- ARGV: 1 action ('reconnect'|'disconnect'), 2 now_ms, 3 changes channel,
--       reconnect only: 4 deadline_ms, 5 new secret ('' keeps it), 6 previous-secret valid until ms,
--       7 settings JSON ('' keeps them)
-- Returns the state before, or false when the connection does not exist.
local conn = KEYS[1]
local before = redis.call('HGET', conn, 'state')
if not before then return false end
local now = ARGV[2]
if ARGV[1] == 'disconnect' then
  if before == 'disconnected' then return before end
  redis.call('HSET', conn, 'state', 'disconnected', 'reason', 'disconnected_by_user', 'updated_at', now)
else
  redis.call('HSET', conn, 'state', 'pending', 'reason', 'awaiting_first_event', 'pending_deadline', ARGV[4],
    'seen', '{}', 'updated_at', now, 'last_error', '')
  if ARGV[5] ~= '' then
    local old = redis.call('HGET', conn, 'secret')
    redis.call('HSET', conn, 'secret', ARGV[5], 'prev_secret', old, 'prev_secret_until', ARGV[6])
    redis.call('HDEL', conn, 'prev_secret_used_at')
  end
  if ARGV[7] ~= '' then redis.call('HSET', conn, 'settings', ARGV[7]) end
end
local version = redis.call('HINCRBY', conn, 'version', 1)
local state = redis.call('HGET', conn, 'state')
local id = redis.call('HGET', conn, 'id')
redis.call('PUBLISH', ARGV[3], cjson.encode({id = id,
  account_id = redis.call('HGET', conn, 'account_id'), version = version, state = state}))
if ARGV[1] == 'disconnect' then
  redis.call('RPUSH', KEYS[2], cjson.encode({id = 'evt_' .. id .. '_' .. version .. '_1',
    type = 'connection.disconnected', at = now}))
  redis.call('LTRIM', KEYS[2], -100, -1)
end
return before
