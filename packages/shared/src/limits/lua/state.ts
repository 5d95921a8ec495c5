import { EFFECTIVE_LUA, NOW_MS_LUA, PAUSE_OF_LUA } from './common.js';

/** Read-only view of one scope (no writes, so it may run on a replica). */
export const STATE_LUA = `#!lua flags=no-writes
--[[
  state: the rolling window's usage, effective limits, learned limits and pause, without
  writing (reservations that left the window but are not pruned yet are subtracted).

  KEYS[1]  log: sorted set, reservation id -> reservation time (ms)
  KEYS[2]  est: hash, reservation id -> tokens
  KEYS[3]  total: string, sum of est
  KEYS[4]  pause: string "<reason>|<end>" with a PX TTL
  KEYS[5]  learned: hash {rpm, tpm} with a PX TTL
  KEYS[6]  probe: hash {cap, held}, the slow start's cap on calls in flight

  ARGV[1]  window length, ms
  ARGV[2]  configured requests per window (0: unlimited)
  ARGV[3]  configured input tokens per window (0: unlimited)

  Returns { requests, tokens, rpmLimit, tpmLimit, learnedRpm, learnedTpm, learnedPttl,
  pausedUntil, now, pauseReason, probe } with -1 (or '') for "none".
]]
${NOW_MS_LUA}
${EFFECTIVE_LUA}
${PAUSE_OF_LUA}

local window = tonumber(ARGV[1])
local now = nowMs()
local cutoff = now - window
local count = redis.call('ZCOUNT', KEYS[1], '(' .. cutoff, '+inf')
local tokens = 0
if count > 0 then
  local stored = redis.call('GET', KEYS[3])
  if stored then
    tokens = tonumber(stored)
  else
    for _, v in ipairs(redis.call('HVALS', KEYS[2])) do tokens = tokens + tonumber(v) end
  end
  local offset = 0
  while true do
    local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', offset, 500)
    if #ids == 0 then break end
    local est = redis.call('HMGET', KEYS[2], unpack(ids))
    for i = 1, #ids do tokens = tokens - (tonumber(est[i]) or 0) end
    offset = offset + #ids
  end
  tokens = math.max(0, tokens)
end

local learned = redis.call('HMGET', KEYS[5], 'rpm', 'tpm')
local learnedPttl = redis.call('PTTL', KEYS[5])
local pausedUntil, pauseReason = pauseOf(KEYS[4], now)
return {
  count, tokens,
  effective(tonumber(ARGV[2]), learned[1]), effective(tonumber(ARGV[3]), learned[2]),
  tonumber(learned[1]) or -1, tonumber(learned[2]) or -1, learnedPttl,
  pausedUntil or -1, now,
  pauseReason or '',
  tonumber(redis.call('HGET', KEYS[6], 'cap')) or -1,
}
`;
