-- Record hops of a test window's delivery (when it reached the receiver's hops, or a status API pushed it
-- to streams), once each: a hop keeps its first time. The receiver calls it after the broker confirmed a
-- delivery of a connection whose window is open; a status API, when it first fans the stored change out.
-- KEYS: 1 conn hash
-- ARGV: 1 test id ('' = whatever window is current), 2 delivery id, 3 outcome, 4 reason code,
--       5 hops to add (JSON object: hop name -> ms), 6 changes channel
-- The window follows one delivery: the one that passed it, else the first verified one (a repeated
-- event does not count), else the latest to arrive (see apply_delivery.lua, which applies the same
-- rule). A delivery it does not follow is only taken up while the window is open and if it arrived
-- after it opened.
-- Returns 1 when a hop was recorded (the change is published), else 0.
local conn = KEYS[1]
local t = redis.call('HMGET', conn, 'test_id', 'test_state', 'test_started_at', 'test_hops', 'state')
if not t[1] or t[5] == 'disconnected' then return 0 end
if ARGV[1] ~= '' and ARGV[1] ~= t[1] then return 0 end
local hops = cjson.decode(t[4] or '{}')
if type(hops) ~= 'table' then hops = {} end
local add = cjson.decode(ARGV[5])
if hops.delivery_id ~= ARGV[2] then
  local received = tonumber(add.received or '0') or 0
  if ARGV[1] ~= '' or t[2] ~= 'waiting' or received < (tonumber(t[3] or '0') or 0) then return 0 end
  local follows = not hops.delivery_id or ((hops.outcome ~= 'verified' or hops.duplicate)
    and (ARGV[3] == 'verified' or received >= (tonumber(hops.received or '0') or 0)))
  if not follows then return 0 end
  hops = {delivery_id = ARGV[2], outcome = ARGV[3]}
  if ARGV[4] ~= '' then hops.reason = ARGV[4] end
end
local changed = false
for name, at in pairs(add) do
  if not hops[name] then
    hops[name] = at
    changed = true
  end
end
if not changed then return 0 end
redis.call('HSET', conn, 'test_hops', cjson.encode(hops))
local version = redis.call('HINCRBY', conn, 'version', 1)
redis.call('PUBLISH', ARGV[6], cjson.encode({id = redis.call('HGET', conn, 'id'),
  account_id = redis.call('HGET', conn, 'account_id'), version = version, state = t[5]}))
return 1
