import { NOW_MS_LUA, PRUNE_LUA } from './common.js';

/** Gives back reservations of one scope whose call was never made. */
export const RELEASE_LUA = `--[[
  release: removes reservations whose call was never made (shutdown, cancelled job), freeing
  their request and tokens at once. Unknown or expired ids are skipped.

  KEYS[1]  log: sorted set, reservation id -> reservation time (ms)
  KEYS[2]  est: hash, reservation id -> tokens
  KEYS[3]  total: string, sum of est
  KEYS[4]  open: sorted set of the slow start's calls in flight (see reserve)

  ARGV[1]  window length, ms
  ARGV[2..] reservation ids

  Returns the number of reservations removed.
]]
${NOW_MS_LUA}
${PRUNE_LUA}

local window = tonumber(ARGV[1])
local count, tokens = prune(KEYS[1], KEYS[2], KEYS[3], nowMs() - window)
local removed = 0
for i = 2, #ARGV do
  local old = redis.call('HGET', KEYS[2], ARGV[i])
  if old then
    redis.call('HDEL', KEYS[2], ARGV[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZREM', KEYS[4], ARGV[i])
    tokens = tokens - tonumber(old)
    count = count - 1
    removed = removed + 1
  end
end
if removed > 0 and count > 0 then redis.call('SET', KEYS[3], math.max(0, tokens), 'KEEPTTL') end
finish(KEYS[1], KEYS[2], KEYS[3], count, 2 * window)
return removed
`;
