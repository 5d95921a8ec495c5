import { NOW_MS_LUA, PRUNE_LUA } from './common.js';

/** Replaces estimates by actual token counts for reservations of one scope. */
export const SETTLE_LUA = `--[[
  settle: replaces the estimate of each reservation by the actual input tokens, keeping its
  reservation time, and adjusts the running total. A reservation that already left the window
  (or was released) is skipped.

  KEYS[1]  log: sorted set, reservation id -> reservation time (ms)
  KEYS[2]  est: hash, reservation id -> tokens
  KEYS[3]  total: string, sum of est

  ARGV[1]  window length, ms
  ARGV[2..] pairs: reservation id, actual tokens

  Returns the number of reservations updated.
]]
${NOW_MS_LUA}
${PRUNE_LUA}

local window = tonumber(ARGV[1])
local count, tokens = prune(KEYS[1], KEYS[2], KEYS[3], nowMs() - window)
local updated = 0
for i = 2, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[2], ARGV[i])
  if old then
    local actual = tonumber(ARGV[i + 1])
    redis.call('HSET', KEYS[2], ARGV[i], actual)
    tokens = tokens + actual - tonumber(old)
    updated = updated + 1
  end
end
if updated > 0 then redis.call('SET', KEYS[3], math.max(0, tokens), 'KEEPTTL') end
finish(KEYS[1], KEYS[2], KEYS[3], count, 2 * window)
return updated
`;
