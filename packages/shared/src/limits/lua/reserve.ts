import { EFFECTIVE_LUA, NOW_MS_LUA, PRUNE_LUA } from './common.js';

/** Reserves the longest prefix of a batch that fits the rolling window. One call per batch. */
export const RESERVE_LUA = `--[[
  reserve: grants the longest prefix of a batch of requests that fits in the rolling window.

  KEYS[1]  log: sorted set, reservation id -> reservation time (ms)
  KEYS[2]  est: hash, reservation id -> tokens
  KEYS[3]  total: string, sum of est
  KEYS[4]  pause: string with a PX TTL, set while the fleet is paused (429 RetryInfo)
  KEYS[5]  learned: hash {rpm, tpm, reported?} with a PX TTL, limits learned from 429s
  KEYS[6]  probe: string, the slow start's requests per window while a limit is unknown

  ARGV[1]  window length, ms
  ARGV[2]  configured requests per window (0: unlimited)
  ARGV[3]  configured input tokens per window (0: unlimited)
  ARGV[4]  reservation id prefix, unique per call; members are "<prefix>:<index>" (0-based)
  ARGV[5]  slow start: requests per window to begin with while rpm or tpm is unknown (0: off)
  ARGV[6]  TTL of the probe, and of limits the provider reported while they still bind, ms
  ARGV[7..] estimated tokens of each request, in order

  Returns { granted, waitMs, now, pausedUntil (-1: not paused), pause reason ('' when none),
  probe (-1: no slow start) }. A request larger than the whole token limit is granted when the
  window is empty, so it cannot deadlock.

  Slow start: while a dimension has no configured and no learned limit, requests per window are
  capped by the probe, which settle() grows with every served call (the cap doubles per round
  trip) and observe() cuts on a 429. So an unknown quota is found by a handful of 429s, whose
  QuotaFailure then teaches the real limit, not by a burst of hundreds.
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

local FIRST = 7
local SLOW_START_RECHECK_MS = 1000
local window = tonumber(ARGV[1])
local now = nowMs()
local paused = redis.call('PTTL', KEYS[4])
if paused > 0 then return { 0, paused, now, now + paused, redis.call('GET', KEYS[4]) or '', -1 } end

local count, tokens = prune(KEYS[1], KEYS[2], KEYS[3], now - window)
local learned = redis.call('HMGET', KEYS[5], 'rpm', 'tpm', 'reported')
local rpm = effective(tonumber(ARGV[2]), learned[1])
local tpm = effective(tonumber(ARGV[3]), learned[2])

local probe = -1
local slowStart = tonumber(ARGV[5])
if slowStart > 0 and (rpm == 0 or tpm == 0) then
  probe = tonumber(redis.call('GET', KEYS[6]))
  if not probe then
    probe = slowStart
    redis.call('SET', KEYS[6], probe, 'PX', ARGV[6])
  end
  local cap = math.max(1, math.floor(probe))
  if rpm == 0 or cap < rpm then rpm = cap end
end

local granted = 0
for i = FIRST, #ARGV do
  local want = tonumber(ARGV[i])
  if not fits(count, tokens, want, rpm, tpm) then break end
  local id = ARGV[4] .. ':' .. (i - FIRST)
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('HSET', KEYS[2], id, want)
  count = count + 1
  tokens = tokens + want
  granted = granted + 1
end
if granted > 0 then redis.call('SET', KEYS[3], tokens) end
finish(KEYS[1], KEYS[2], KEYS[3], count, 2 * window)

local waitMs = 0
if granted < #ARGV - FIRST + 1 then
  waitMs = waitUntilFits(now, window, count, tokens, tonumber(ARGV[FIRST + granted]), rpm, tpm)
  -- The slow start's cap grows as calls settle, long before the window rolls: look again soon.
  if probe >= 0 and rpm == math.max(1, math.floor(probe)) then waitMs = math.min(waitMs, SLOW_START_RECHECK_MS) end
  -- A limit the provider reported still binds: keep it (it lapses only once it stops binding).
  if learned[3] then redis.call('PEXPIRE', KEYS[5], ARGV[6]) end
end
return { granted, waitMs, now, -1, '', probe }
`;
