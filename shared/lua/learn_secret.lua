-- Store a secret offered by a handshake (Asana's X-Hook-Secret), once: compare-and-set on the stored
-- (sealed) placeholder the caller read and opened (shared/store.py decides it is still a placeholder).
-- KEYS: 1 conn hash
-- ARGV: 1 the offered secret, sealed, 2 the stored secret it replaces, exactly as read, 3 at_ms,
--       4 changes channel
-- Returns: learnt (stored now) | changed (the stored secret is no longer the one read: look again) |
-- disconnected | missing
local conn = KEYS[1]
local offered, expected, at = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', conn) == 0 then return 'missing' end
local current = redis.call('HMGET', conn, 'state', 'secret')
if current[1] == 'disconnected' then return 'disconnected' end
if (current[2] or '') ~= expected then return 'changed' end
redis.call('HSET', conn, 'secret', offered, 'secret_learnt_at', at, 'updated_at', at)
local version = redis.call('HINCRBY', conn, 'version', 1)
local id = redis.call('HGET', conn, 'id')
local account = redis.call('HGET', conn, 'account_id')
redis.call('PUBLISH', ARGV[4], cjson.encode({id = id, account_id = account, version = version, state = current[1]}))
return 'learnt'
