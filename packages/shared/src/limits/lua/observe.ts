import { EFFECTIVE_LUA, NOW_MS_LUA, PRUNE_LUA } from './common.js';

/** Learns a lower effective limit after a 429 received within the configured limits. */
export const OBSERVE_LUA = `--[[
  observe: the provider answered 429 although the window was within the limits, so the real
  limit is lower. Picks the dimension closest to its effective limit (usage / limit; requests
  when neither is limited) and learns floor(usage * factor) for it, never below the floor
  (1 request, or ARGV[6] tokens) and never above the current effective limit. The learned hash
  gets a fresh TTL: the configured limits apply again ARGV[5] ms after the last 429.
  When the 429 itself reported the limit (ARGV[7] names the dimension), learns exactly that value
  instead, never below the floor and never above the configured limit (it may raise an earlier,
  usage-based guess).

  KEYS[1]  log: sorted set, reservation id -> reservation time (ms)
  KEYS[2]  est: hash, reservation id -> tokens
  KEYS[3]  total: string, sum of est
  KEYS[4]  learned: hash {rpm, tpm, reported?} with a PX TTL
  KEYS[5]  probe: hash {cap, held}, the slow start's cap on calls in flight (see reserve)
  KEYS[6]  open: sorted set of the slow start's calls in flight (see reserve)

  ARGV[1]  window length, ms
  ARGV[2]  configured requests per window (0: unlimited)
  ARGV[3]  configured input tokens per window (0: unlimited)
  ARGV[4]  share of usage to learn (0.9)
  ARGV[5]  TTL of the learned limits, ms
  ARGV[6]  lowest learned token limit
  ARGV[7]  reported dimension: 'rpm', 'tpm' or '' (nothing reported)
  ARGV[8]  reported limit per window (when ARGV[7] is set)
  ARGV[9]  TTL of a reported limit, ms (reserve() keeps it while it binds)
  ARGV[10] slow start's first cap: the probe is never cut below it

  A running slow start (probe) is halved from the calls now in flight: the limit is below what
  was just sent. With no configured limit and no reported one, only the probe is cut
  (nothing is learned): an unknown quota is probed again, not guessed for 10 minutes.

  Returns { dimension (0: rpm, 1: tpm), learned limit, expiresAt (server ms) }.
]]
${NOW_MS_LUA}
${EFFECTIVE_LUA}
${PRUNE_LUA}

local window = tonumber(ARGV[1])
local factor = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local now = nowMs()
local count, tokens = prune(KEYS[1], KEYS[2], KEYS[3], now - window)
finish(KEYS[1], KEYS[2], KEYS[3], count, 2 * window)

local learned = redis.call('HMGET', KEYS[4], 'rpm', 'tpm')
local rpm = effective(tonumber(ARGV[2]), learned[1])
local tpm = effective(tonumber(ARGV[3]), learned[2])
local rpmUse = (rpm > 0) and (count / rpm) or -1
local tpmUse = (tpm > 0) and (tokens / tpm) or -1

local newLimit, field
local reported = tonumber(ARGV[8])
if (ARGV[7] == 'rpm' or ARGV[7] == 'tpm') and reported and reported > 0 then
  field = ARGV[7]
  local floor, configured = 1, tonumber(ARGV[2])
  if field == 'tpm' then floor, configured = tonumber(ARGV[6]), tonumber(ARGV[3]) end
  newLimit = math.max(floor, math.floor(reported))
  if configured > 0 then newLimit = math.min(newLimit, configured) end
  ttl = math.max(ttl, tonumber(ARGV[9]))
  redis.call('HSET', KEYS[4], 'reported', 1)
elseif tonumber(ARGV[2]) == 0 and tonumber(ARGV[3]) == 0 then
  -- Nothing configured and nothing reported (Vertex's shared quota, an overloaded project): no
  -- limit to believe in for 10 minutes. Only the slow start is cut below (and grows back).
  local probe = tonumber(redis.call('HGET', KEYS[5], 'cap'))
  local cut = math.max(tonumber(ARGV[10]), 1, math.floor(redis.call('ZCARD', KEYS[6]) / 2))
  if probe and cut < probe then redis.call('HSET', KEYS[5], 'cap', cut, 'base', cut) end
  return { 0, math.min(cut, probe or cut), now }
else
  local limit, value, floor = rpm, count, 1
  field = 'rpm'
  if tpmUse > rpmUse then field, limit, value, floor = 'tpm', tpm, tokens, tonumber(ARGV[6]) end
  newLimit = math.max(floor, math.floor(value * factor))
  if limit > 0 then newLimit = math.min(newLimit, limit) end
end
redis.call('HSET', KEYS[4], field, newLimit)
redis.call('PEXPIRE', KEYS[4], math.max(ttl, redis.call('PTTL', KEYS[4])))
local probe = tonumber(redis.call('HGET', KEYS[5], 'cap'))
if probe then
  local cut = math.max(tonumber(ARGV[10]), 1, math.floor(redis.call('ZCARD', KEYS[6]) / 2))
  if cut < probe then redis.call('HSET', KEYS[5], 'cap', cut, 'base', cut) end
end
return { (field == 'rpm') and 0 or 1, newLimit, now + ttl }
`;
