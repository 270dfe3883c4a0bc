-- Open a test window on a connection, atomically; an older window is archived (a still-open one as
-- failed: test_superseded). Publishes the change.
-- KEYS: 1 conn hash, 2 tests archive hash
-- ARGV: 1 test id, 2 now_ms, 3 expires_at_ms, 4 changes channel, 5 archive ttl s, 6 archived windows kept
-- Returns 'started', 'disconnected', or false when the connection does not exist.
local conn, archive, now = KEYS[1], KEYS[2], ARGV[2]
local state = redis.call('HGET', conn, 'state')
if not state then return false end
if state == 'disconnected' then return 'disconnected' end

local names = {'test_id', 'test_state', 'test_reason', 'test_seen', 'test_started_at', 'test_expires_at',
  'test_finished_at', 'test_hops'}
local old = redis.call('HMGET', conn, unpack(names))
if old[1] then
  local record = {}
  for i, name in ipairs(names) do record[name] = old[i] or '' end
  if record.test_state == 'waiting' then
    record.test_state, record.test_reason, record.test_finished_at = 'failed', 'test_superseded', now
  end
  redis.call('HSET', archive, old[1], cjson.encode(record))
  redis.call('EXPIRE', archive, ARGV[5])
  -- Keep the latest windows only (by start): the archive never grows without bound.
  local over = redis.call('HLEN', archive) - tonumber(ARGV[6])
  if over > 0 then
    local flat, records = redis.call('HGETALL', archive), {}
    for i = 1, #flat, 2 do
      local ok, decoded = pcall(cjson.decode, flat[i + 1])
      local at = ok and type(decoded) == 'table' and tonumber(decoded.test_started_at) or 0
      records[#records + 1] = {flat[i], at}
    end
    table.sort(records, function(a, b) return a[2] < b[2] end)
    for i = 1, over do redis.call('HDEL', archive, records[i][1]) end
  end
end

redis.call('HSET', conn, 'test_id', ARGV[1], 'test_state', 'waiting', 'test_reason', '', 'test_seen', '{}',
  'test_started_at', now, 'test_expires_at', ARGV[3], 'test_finished_at', '', 'test_hops', '{}', 'updated_at', now)
local version = redis.call('HINCRBY', conn, 'version', 1)
redis.call('PUBLISH', ARGV[4], cjson.encode({id = redis.call('HGET', conn, 'id'),
  account_id = redis.call('HGET', conn, 'account_id'), version = version, state = state, test = 'waiting'}))
return 'started'
