import { EFFECTIVE_LUA, NOW_MS_LUA, PRUNE_LUA } from './common.js';

/** Reserves the longest prefix of a batch that fits the rolling window. One call per batch. */
export const RESERVE_LUA = `--[[
  reserve: grants the longest prefix of a batch of requests that fits in the rolling window.

  KEYS[1]  log: sorted set, reservation id -> reservation time (ms)
  KEYS[2]  est: hash, reservation id -> tokens
  KEYS[3]  total: string, sum of est
  KEYS[4]  pause: string with a PX TTL, set while the fleet is paused (429 RetryInfo)
  KEYS[5]  learned: hash {rpm, tpm} with a PX TTL, limits learned from 429s

  ARGV[1]  window length, ms
  ARGV[2]  configured requests per window (0: unlimited)
  ARGV[3]  configured input tokens per window (0: unlimited)
  ARGV[4]  reservation id prefix, unique per call; members are "<prefix>:<index>" (0-based)
  ARGV[5..] estimated tokens of each request, in order

  Returns { granted, waitMs, now, pausedUntil (-1: not paused) }. A request larger than the
  whole token limit is granted when the window is empty, so it cannot deadlock.
]]
${NOW_MS_LUA}
${EFFECTIVE_LUA}
${PRUNE_LUA}

local function fits(count, tokens, want, rpm, tpm)
  if rpm > 0 and count + 1 > rpm then return false end
  if tpm > 0 and tokens + want > tpm and count > 0 then return false end
  return true
end

-- Walks the oldest reservations until enough would have left the window for the next request.
local function waitUntilFits(now, window, count, tokens, want, rpm, tpm)
  local needCount, needTokens = 0, 0
  if rpm > 0 then needCount = count + 1 - rpm end
  if tpm > 0 then
    if want > tpm then needCount = count else needTokens = tokens + want - tpm end
  end
  local freedCount, freedTokens, start = 0, 0, 0
  while true do
    local page = redis.call('ZRANGE', KEYS[1], start, start + 199, 'WITHSCORES')
    if #page == 0 then break end
    local ids = {}
    for j = 1, #page, 2 do ids[#ids + 1] = page[j] end
    local est = redis.call('HMGET', KEYS[2], unpack(ids))
    for j = 1, #ids do
      freedCount = freedCount + 1
      freedTokens = freedTokens + (tonumber(est[j]) or 0)
      if freedCount >= needCount and freedTokens >= needTokens then
        return math.max(1, tonumber(page[2 * j]) + window - now)
      end
    end
    start = start + 200
  end
  return window
end

local window = tonumber(ARGV[1])
local now = nowMs()
local paused = redis.call('PTTL', KEYS[4])
if paused > 0 then return { 0, paused, now, now + paused } end

local count, tokens = prune(KEYS[1], KEYS[2], KEYS[3], now - window)
local learned = redis.call('HMGET', KEYS[5], 'rpm', 'tpm')
local rpm = effective(tonumber(ARGV[2]), learned[1])
local tpm = effective(tonumber(ARGV[3]), learned[2])

local granted = 0
for i = 5, #ARGV do
  local want = tonumber(ARGV[i])
  if not fits(count, tokens, want, rpm, tpm) then break end
  local id = ARGV[4] .. ':' .. (i - 5)
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('HSET', KEYS[2], id, want)
  count = count + 1
  tokens = tokens + want
  granted = granted + 1
end
if granted > 0 then redis.call('SET', KEYS[3], tokens) end
finish(KEYS[1], KEYS[2], KEYS[3], count, 2 * window)

local waitMs = 0
if granted < #ARGV - 4 then
  waitMs = waitUntilFits(now, window, count, tokens, tonumber(ARGV[5 + granted]), rpm, tpm)
end
return { granted, waitMs, now, -1 }
`;
