import { NOW_MS_LUA, PRUNE_LUA } from './common.js';

/** Replaces estimates by actual token counts for reservations of one scope. */
export const SETTLE_LUA = `--[[
  settle: replaces the estimate of each reservation by the actual input tokens, keeping its
  reservation time, and adjusts the running total. A reservation that already left the window
  (or was released) is skipped.

  KEYS[1]  log: sorted set, reservation id -> reservation time (ms)
  KEYS[2]  est: hash, reservation id -> tokens
  KEYS[3]  total: string, sum of est
  KEYS[4]  probe: string, the slow start's requests per window (see reserve)

  ARGV[1]  window length, ms
  ARGV[2]  probe growth per settled call (the probe grows only while at least half used)
  ARGV[3..] pairs: reservation id, actual tokens

  Returns the number of reservations updated.
]]
${NOW_MS_LUA}
${PRUNE_LUA}

local window = tonumber(ARGV[1])
local count, tokens = prune(KEYS[1], KEYS[2], KEYS[3], nowMs() - window)
local updated = 0
for i = 3, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[2], ARGV[i])
  if old then
    local actual = tonumber(ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i], actual)
    tokens = tokens + actual - tonumber(old)
    updated = updated + 1
  end
end
if updated > 0 then redis.call('SET', KEYS[3], math.max(0, tokens), 'KEEPTTL') end
local probe = tonumber(redis.call('GET', KEYS[4]))
if probe and updated > 0 and count * 2 >= probe then
  redis.call('SET', KEYS[4], probe + updated * tonumber(ARGV[2]), 'KEEPTTL')
end
finish(KEYS[1], KEYS[2], KEYS[3], count, 2 * window)
return updated
`;
