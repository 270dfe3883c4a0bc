-- Apply one delivery to one connection, atomically and idempotently.
-- KEYS: 1 conn hash, 2 deliveries list, 3 seen-delivery key, 4 seen-event key, 5 notification outbox list,
--       6 seen-fingerprint key (of the signed content, for an event id the signature does not cover)
-- ARGV: 1 list entry (JSON), 2 outcome, 3 reason code, 4 message, 5 at_ms, 6 dedupe ttl s,
--       7 changes channel, 8 has event id ('1'/'0'), 9 secret slot, 10 handshake ('1'/'0'),
--       11 rejections since the last verified event that make a connected connection 'failing',
--       12 deliveries kept, 13 has fingerprint ('1'/'0'), 14 checked at ms (the receiver verified or
--       rejected it), 15 consumed at ms (the verifier took it), 16 delivery id,
--       17 a held delivery verified after a fix ('1'/'0'),
--       18..22 the learned rhythm: events before it may say silent, smoothing weight (0..1), stddevs k,
--       times the mean, floor ms (docs/ARCHITECTURE.md, "Silence"),
--       23 the quiet changes channel: where a change that leaves a connected connection connected (an
--       event counted, no test window moved) is published instead of 7; nothing a receiver keeps changed
-- Outcomes: verified (counts, connects, passes a test), rejected (recorded, counted as a rejection),
-- reachable (a handshake that proves nothing about the secret: recorded, sets reachable_at, nothing else).
-- Returns {status, from_state, to_state, notifications added, outbox length, silent at ms};
-- status: applied | duplicate | missing | ignored. "silent at": when a connected connection with an
-- expected interval or a learned rhythm turns silent unless another verified event arrives (0: not
-- applicable); returned for verified and duplicate deliveries, so the caller can index it for the
-- notifier's silence sweep.
local conn, list, seen_d, seen_e, outbox = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local outcome, reason, message, at = ARGV[2], ARGV[3], ARGV[4], ARGV[5]

-- The connection hash is read with one HMGET at the start and written with one HSET at the end (the
-- counters stay HINCRBYs: they are not read otherwise): the script runs once per webhook, and each
-- redis.call is a whole command (its lookup, its arguments, its reply). `h` holds the fields as Redis
-- would return them now (false: absent): those read at the start, any other once read, and every field
-- the script has set since (so a later read sees its own write, as it would in Redis); `writes` the
-- field/value pairs to set. Nothing else runs while a script does, so holding the writes back until the
-- end changes nothing anyone can see. (A script that fails part way, on a stored JSON value it cannot
-- decode, keeps none of its held-back writes; Redis keeps the commands it did run.)
local h
do
  local v = redis.call('HMGET', conn, 'state', 'rejected_since_event', 'last_event_at', 'expected_interval_s',
    'quiet_after_ms', 'test_state', 'test_started_at', 'test_id', 'test_hops', 'gap_count', 'gap_mean_ms',
    'gap_var_ms2', 'id', 'account_id')
  h = {state = v[1], rejected_since_event = v[2], last_event_at = v[3], expected_interval_s = v[4],
    quiet_after_ms = v[5], test_state = v[6], test_started_at = v[7], test_id = v[8], test_hops = v[9],
    gap_count = v[10], gap_mean_ms = v[11], gap_var_ms2 = v[12], id = v[13], account_id = v[14]}
end
local writes = {}

-- A field only a rarer path reads: read when first needed.
local function get(name)
  local value = h[name]
  if value == nil then
    value = redis.call('HGET', conn, name)
    h[name] = value
  end
  return value
end

-- A field written twice is written twice in the one HSET: Redis sets them in order, so the last stays.
local function put(name, value)
  h[name] = value
  local n = #writes
  writes[n + 1], writes[n + 2] = name, value
end

local function flush()
  if #writes > 0 then
    redis.call('HSET', conn, unpack(writes))
    writes = {}
  end
end

-- The gap (ms) after which a connected connection is silent: the shorter of its expected interval and
-- its learned limit (mark_silent.lua has the same rule); 0: neither.
local function quiet_limit(expected_s, learned_ms)
  local expected, learned = (tonumber(expected_s or '0') or 0) * 1000, tonumber(learned_ms or '0') or 0
  if expected > 0 and learned > 0 then return math.min(expected, learned) end
  return math.max(expected, learned)
end

-- From the fields as they are now (after this script's own writes).
local function silent_at()
  local limit, last_event = quiet_limit(h.expected_interval_s, h.quiet_after_ms), tonumber(h.last_event_at or '0') or 0
  if h.state ~= 'connected' or limit <= 0 or last_event <= 0 then return 0 end
  return last_event + limit
end

-- Learn the connection's rhythm from the gap before this verified event: an exponentially weighted
-- mean and variance (constant work and memory; the weight is 1/n until it falls to the set one, so the
-- first gaps are plainly averaged), and from them the gap beyond which it counts as silent, once it has
-- seen enough events. A gap longer than that limit is learnt as the limit: a silence does not teach the
-- connection that silences are usual.
local function learn(last_event, now)
  if last_event <= 0 or now <= last_event then return end
  local n = (tonumber(h.gap_count or '0') or 0) + 1
  local mean, var = tonumber(h.gap_mean_ms or '0') or 0, tonumber(h.gap_var_ms2 or '0') or 0
  local gap, known_limit = now - last_event, tonumber(h.quiet_after_ms or '0') or 0
  if known_limit > 0 and gap > known_limit then gap = known_limit end
  local weight = math.max(1 / n, tonumber(ARGV[19]))
  local diff = gap - mean
  mean = mean + weight * diff
  var = (1 - weight) * (var + weight * diff * diff)
  local limit = 0
  if n + 1 >= tonumber(ARGV[18]) then
    limit = math.floor(math.max(mean + tonumber(ARGV[20]) * math.sqrt(var), tonumber(ARGV[21]) * mean,
      tonumber(ARGV[22])))
  end
  put('gap_count', n)
  put('gap_mean_ms', string.format('%.3f', mean))
  put('gap_var_ms2', string.format('%.3f', var))
  put('quiet_after_ms', string.format('%d', limit))
end

local state = h.state
if not state and redis.call('EXISTS', conn) == 0 then return {'missing', '', '', 0, 0, 0} end
if state == 'disconnected' then return {'ignored', state, state, 0, redis.call('LLEN', outbox), 0} end
if not redis.call('SET', seen_d, '1', 'NX', 'EX', ARGV[6]) then
  return {'duplicate', state, state, 0, redis.call('LLEN', outbox), silent_at()}
end

local to = state
-- Notifications (the product's webhooks): what this delivery changes, judged on the state before it.
local events = {}
local failing, silent = false, false
local failing_after = tonumber(ARGV[11]) or 1
if state == 'connected' then
  local last_event = tonumber(h.last_event_at or '0') or 0
  -- Failing: sustained rejection without verified traffic (so one forgery per real event never shows it).
  failing = (tonumber(h.rejected_since_event or '0') or 0) >= failing_after
  local limit = quiet_limit(h.expected_interval_s, h.quiet_after_ms)
  silent = limit > 0 and last_event > 0 and tonumber(at) - last_event > limit
end
-- A test window counts what arrives after it opened (what was seen decides why it fails at expiry).
local test_id, test_hops = h.test_id, h.test_hops
local test_open = h.test_state == 'waiting' and tonumber(at) >= tonumber(h.test_started_at or '0')
local note = {}
if outcome == 'verified' then
  -- A duplicate when its event id or (for an unsigned id) its signed content was seen before.
  if (ARGV[8] == '1' and redis.call('EXISTS', seen_e) == 1)
      or (ARGV[13] == '1' and redis.call('EXISTS', KEYS[6]) == 1) then
    -- A test window whose hops the receiver pointed at this repeat: say it repeats, and let the next
    -- delivery take its place (it cannot pass the test).
    local hops = test_id and cjson.decode(test_hops or '{}')
    if type(hops) == 'table' and hops.delivery_id == ARGV[16] and not hops.duplicate then
      hops.duplicate = true
      if not hops.consumed and (tonumber(ARGV[15]) or 0) > 0 then hops.consumed = tonumber(ARGV[15]) end
      put('test_hops', cjson.encode(hops))
      local version = redis.call('HINCRBY', conn, 'version', 1)
      flush()
      redis.call('PUBLISH', ARGV[7], cjson.encode({id = h.id, account_id = h.account_id, version = version,
        state = state}))
    end
    return {'duplicate', state, state, 0, redis.call('LLEN', outbox), silent_at()}
  end
  if ARGV[8] == '1' then redis.call('SET', seen_e, '1', 'EX', ARGV[6]) end
  if ARGV[13] == '1' then redis.call('SET', KEYS[6], '1', 'EX', ARGV[6]) end
  redis.call('HINCRBY', conn, 'events_received', 1)
  local last_event = tonumber(h.last_event_at or '0') or 0
  learn(last_event, tonumber(at))
  -- The latest verified event's time: never moved back by one applied out of order.
  if tonumber(at) > last_event then put('last_event_at', at) end
  put('last_verified_slot', ARGV[9])
  put('rejected_since_event', '0')
  if ARGV[9] == 'previous' then put('prev_secret_used_at', at) end
  if test_open then  -- an open test window passes with the first verified event or handshake
    local passed = 'test_event_verified'
    if ARGV[10] == '1' then passed = 'test_handshake_completed' end
    put('test_state', 'passed')
    put('test_reason', passed)
    put('test_finished_at', at)
    note.test = 'passed'
    events[#events + 1] = 'test.passed'
  end
  -- A held delivery that a reconnect verified, on a connection that failed since it last connected: the
  -- product was told it failed, so it is told it recovered (not that it connected for the first time).
  local refailed = ARGV[17] == '1' and state == 'pending'
    and tonumber(get('failed_at') or '0') > tonumber(get('connected_at') or '0')
  if state == 'pending' or state == 'failed' then
    to = 'connected'
    local why = 'verified_event'
    if ARGV[10] == '1' then why = 'handshake_completed' end
    put('state', to)
    put('reason', why)
    put('connected_at', at)
    put('last_error', '')
  end
  if state == 'pending' and not refailed then events[#events + 1] = 'connection.connected'
  elseif state == 'failed' or failing or silent or refailed then events[#events + 1] = 'connection.recovered' end
elseif outcome == 'reachable' then
  put('reachable_at', at)
  -- Worth telling while the connection waits for its first verified event (or failed without one).
  if state == 'pending' or state == 'failed' then events[#events + 1] = 'connection.reachable' end
else
  local since = redis.call('HINCRBY', conn, 'rejected_since_event', 1)
  if state == 'connected' and since == failing_after then events[#events + 1] = 'connection.failing' end
  put('last_error', cjson.encode({code = reason, message = message, at = tonumber(at)}))
  redis.call('HINCRBY', conn, 'rejected_total', 1)
  if state == 'pending' then
    local seen = cjson.decode(get('seen') or '{}')
    seen[reason] = (seen[reason] or 0) + 1
    put('seen', cjson.encode(seen))
  end
  if test_open then
    local tseen = cjson.decode(get('test_seen') or '{}')
    tseen[reason] = (tseen[reason] or 0) + 1
    put('test_seen', cjson.encode(tseen))
  end
end

-- The test window's hops follow one delivery: the one that passed it, else the first verified one,
-- else the latest to arrive (the same rule as test_hop.lua, which the receiver and the status API
-- record theirs with; a repeated event does not count as verified).
if test_id then
  local hops = cjson.decode(test_hops or '{}')
  if type(hops) ~= 'table' then hops = {} end
  local follows = hops.delivery_id == ARGV[16]
  if not follows and test_open and (outcome == 'verified' or not hops.delivery_id
      or ((hops.outcome ~= 'verified' or hops.duplicate) and tonumber(at) >= (tonumber(hops.received or '0') or 0))) then
    follows, hops = true, {delivery_id = ARGV[16], outcome = outcome}
    if outcome == 'rejected' then hops.reason = reason end
  end
  if follows then
    local now = redis.call('TIME')
    local add = {received = tonumber(at), checked = tonumber(ARGV[14]) or 0, consumed = tonumber(ARGV[15]) or 0,
      stored = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)}
    for name, value in pairs(add) do
      if not hops[name] and value > 0 then hops[name] = value end
    end
    put('test_hops', cjson.encode(hops))
    note.test_hop = {test = test_id, delivery = ARGV[16]}  -- a status API records when it pushed it
  end
end

redis.call('LPUSH', list, ARGV[1])
redis.call('LTRIM', list, 0, tonumber(ARGV[12]) - 1)
put('updated_at', at)
local version = redis.call('HINCRBY', conn, 'version', 1)
flush()
local id, account = h.id, h.account_id
note.id, note.account_id, note.version, note.state = id, account, version, to
local channel = ARGV[7]
if ARGV[23] and state == 'connected' and to == 'connected' and note.test == nil and note.test_hop == nil then
  channel = ARGV[23]
end
redis.call('PUBLISH', channel, cjson.encode(note))
for i, kind in ipairs(events) do
  redis.call('RPUSH', outbox, cjson.encode({id = 'evt_' .. id .. '_' .. version .. '_' .. i, type = kind, at = at}))
end
if #events > 0 then redis.call('LTRIM', outbox, -100, -1) end  -- bounded if no notifier relays it
local silent = 0
if outcome == 'verified' then silent = silent_at() end
return {'applied', state, to, #events, redis.call('LLEN', outbox), silent}
