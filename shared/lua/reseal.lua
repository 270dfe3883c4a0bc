-- Replace sealed fields of a connection (a key rotation), compare-and-set on what the caller read.
-- KEYS: 1 conn hash
-- ARGV: triples: field name, the value read ('' when absent), the new value
-- Returns 1 when written, 0 when a field changed meanwhile (the caller reads again).
for i = 1, #ARGV, 3 do
  if (redis.call('HGET', KEYS[1], ARGV[i]) or '') ~= ARGV[i + 1] then return 0 end
end
for i = 1, #ARGV, 3 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2]) end
return 1
