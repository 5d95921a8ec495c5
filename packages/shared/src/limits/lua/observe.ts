import { EFFECTIVE_LUA, NOW_MS_LUA, PRUNE_LUA } from './common.js';

/** Learns a lower effective limit after a 429 received within the configured limits. */
export const OBSERVE_LUA = `--[[
  observe: the provider answered 429 although the window was within the limits, so the real
  limit is lower. Picks the dimension closest to its effective limit (usage / limit; requests
  when neither is limited) and learns floor(usage * factor) for it, never below the floor
  (1 request, or ARGV[6] tokens) and never above the current effective limit. The learned hash
  gets a fresh TTL: the configured limits apply again ARGV[5] ms after the last 429.

  KEYS[1]  log: sorted set, reservation id -> reservation time (ms)
  KEYS[2]  est: hash, reservation id -> tokens
  KEYS[3]  total: string, sum of est
  KEYS[4]  learned: hash {rpm, tpm} with a PX TTL

  ARGV[1]  window length, ms
  ARGV[2]  configured requests per window (0: unlimited)
  ARGV[3]  configured input tokens per window (0: unlimited)
  ARGV[4]  share of usage to learn (0.9)
  ARGV[5]  TTL of the learned limits, ms
  ARGV[6]  lowest learned token limit

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

local field, limit, value, floor = 'rpm', rpm, count, 1
if tpmUse > rpmUse then field, limit, value, floor = 'tpm', tpm, tokens, tonumber(ARGV[6]) end
local newLimit = math.max(floor, math.floor(value * factor))
if limit > 0 then newLimit = math.min(newLimit, limit) end
redis.call('HSET', KEYS[4], field, newLimit)
redis.call('PEXPIRE', KEYS[4], ttl)
return { (field == 'rpm') and 0 or 1, newLimit, now + ttl }
`;
