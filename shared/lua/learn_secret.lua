-- Store a secret offered by a handshake (Asana's X-Hook-Secret), once: compare-and-set on the placeholder.
-- KEYS: 1 conn hash
-- ARGV: 1 offered secret, 2 placeholder prefix, 3 at_ms, 4 changes channel
-- Returns: learnt (stored now) | same (the secret already learnt, offered again) | taken (another secret
-- was learnt first) | disconnected | missing
local conn = KEYS[1]
local offered, placeholder, at = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', conn) == 0 then return 'missing' end
local current = redis.call('HMGET', conn, 'state', 'secret')
if current[1] == 'disconnected' then return 'disconnected' end
local secret = current[2] or ''
if string.sub(secret, 1, #placeholder) ~= placeholder then
  -- Compared by digest, so the time taken says nothing about how much of the secret was guessed.
  if redis.sha1hex(secret) == redis.sha1hex(offered) then return 'same' end
  return 'taken'
end
redis.call('HSET', conn, 'secret', offered, 'secret_learnt_at', at, 'updated_at', at)
local version = redis.call('HINCRBY', conn, 'version', 1)
local id = redis.call('HGET', conn, 'id')
local account = redis.call('HGET', conn, 'account_id')
redis.call('PUBLISH', ARGV[4], cjson.encode({id = id, account_id = account, version = version, state = current[1]}))
return 'learnt'
