-- Drop the notifications a relay published (confirmed) from the head of a connection's outbox.
-- Only entries with those ids go: what the scripts appended meanwhile stays.
-- KEYS: 1 outbox list
-- ARGV: the published entry ids
-- Returns the number of entries left.
local done = {}
for _, id in ipairs(ARGV) do done[id] = true end
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  local ok, entry = pcall(cjson.decode, head)
  if ok and type(entry) == 'table' and not done[entry.id] then break end
  redis.call('LPOP', KEYS[1])  -- published, or unreadable (it could never be published)
end
return redis.call('LLEN', KEYS[1])
