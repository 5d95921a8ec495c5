import { NOW_MS_LUA, PRUNE_LUA } from './common.js';

/** Replaces estimates by actual token counts for reservations of one scope. */
export const SETTLE_LUA = `--[[
  settle: replaces the estimate of each reservation by the actual input tokens and adjusts the
  running total. Its time moves to when its call left the worker (never earlier than reserved):
  the provider counts a call on arrival, and a call that waited in a busy worker arrives later
  than it was reserved. A reservation that already left the window (or was released) is skipped.

  KEYS[1]  log: sorted set, reservation id -> reservation time (ms)
  KEYS[2]  est: hash, reservation id -> tokens
  KEYS[3]  total: string, sum of est
  KEYS[4]  probe: hash {cap, held}, the slow start's cap on calls in flight (see reserve)
  KEYS[5]  open: sorted set of the slow start's calls in flight (see reserve)

  ARGV[1]  window length, ms
  ARGV[2]  probe growth per settled call (it grows only if it held a request back within the
           last window: a trickle that never meets the cap says nothing about the quota; and at
           most doubles per second)
  ARGV[3..] triples: reservation id, actual tokens, time its call was sent (server ms; 0: keep)

  Returns the number of reservations updated.
]]
${NOW_MS_LUA}
${PRUNE_LUA}

local window = tonumber(ARGV[1])
local count, tokens = prune(KEYS[1], KEYS[2], KEYS[3], nowMs() - window)
local updated = 0
local closed = 0
for i = 3, #ARGV, 3 do
  local old = redis.call('HGET', KEYS[2], ARGV[i])
  if old then
    local actual = tonumber(ARGV[i + 1])
    local sentAt = tonumber(ARGV[i + 2])
    redis.call('HSET', KEYS[2], ARGV[i], actual)
    if sentAt > 0 then redis.call('ZADD', KEYS[1], 'XX', 'GT', sentAt, ARGV[i]) end
    closed = closed + redis.call('ZREM', KEYS[5], ARGV[i])
    tokens = tokens + actual - tonumber(old)
    updated = updated + 1
  end
end
if updated > 0 then redis.call('SET', KEYS[3], math.max(0, tokens), 'KEEPTTL') end
if closed > 0 then
  local probe = redis.call('HMGET', KEYS[4], 'cap', 'held', 'base', 'baseAt')
  local cap, held = tonumber(probe[1]), tonumber(probe[2])
  local now = nowMs()
  if cap and held and held > now - window then
    -- At most twice the cap of a second ago: with fast calls a cap doubling per round trip would
    -- reach half the quota in flight before the first 429 could answer.
    local base, baseAt = tonumber(probe[3]) or cap, tonumber(probe[4]) or 0
    if now - baseAt >= 1000 then base, baseAt = cap, now end
    cap = math.min(cap + closed * tonumber(ARGV[2]), 2 * base)
    redis.call('HSET', KEYS[4], 'cap', cap, 'base', base, 'baseAt', baseAt)
  end
end
finish(KEYS[1], KEYS[2], KEYS[3], count, 2 * window)
return updated
`;
