import { EFFECTIVE_LUA, NOW_MS_LUA, PAUSE_OF_LUA, PRUNE_LUA } from './common.js';

/** Reserves the longest prefix of a batch that fits the rolling window. One call per batch. */
export const RESERVE_LUA = `--[[
  reserve: grants the longest prefix of a batch of requests that fits in the rolling window.

  KEYS[1]  log: sorted set, reservation id -> reservation time (ms)
  KEYS[2]  est: hash, reservation id -> tokens
  KEYS[3]  total: string, sum of est
  KEYS[4]  pause: string "<reason>|<end>" with a PX TTL, set while the fleet is paused (429 RetryInfo)
  KEYS[5]  learned: hash {rpm, tpm, reported?} with a PX TTL, limits learned from 429s
  KEYS[6]  probe: hash {cap, held}: the slow start's cap on calls in flight while a limit is
           unknown, and when it last held a request back (server ms)
  KEYS[7]  open: sorted set, reservation id -> time, of reservations not yet settled or
           released (calls in flight)

  ARGV[1]  window length, ms
  ARGV[2]  configured requests per window (0: unlimited)
  ARGV[3]  configured input tokens per window (0: unlimited)
  ARGV[4]  reservation id prefix, unique per call; members are "<prefix>:<index>" (0-based)
  ARGV[5]  slow start: calls in flight to begin with while rpm or tpm is unknown (0: off)
  ARGV[6]  TTL of the probe, and of limits the provider reported while they still bind, ms
  ARGV[7..] estimated tokens of each request, in order

  Returns { granted, waitMs, now, pausedUntil (-1: not paused), pause reason ('' when none),
  probe (-1: no slow start) }. A request larger than the whole token limit is granted when the
  window is empty, so it cannot deadlock.

  Slow start: while a dimension has no configured and no learned limit, the calls in flight are
  capped by the probe (as TCP's congestion window), which settle() grows by one per served call
  (the cap doubles per round trip) and observe() halves on a 429. The calls that overshoot an
  unknown quota are then at most those in flight, about limit × latency / window: a handful, and
  the first 429's QuotaFailure teaches the real limit. A call older than a window no longer
  counts as in flight (its worker died).
]]
${NOW_MS_LUA}
${EFFECTIVE_LUA}
${PAUSE_OF_LUA}
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
local SLOW_START_RECHECK_MS = 200
local INFLIGHT_RECHECK_MS = 1000
local window = tonumber(ARGV[1])
local now = nowMs()
local pausedUntil, pauseReason = pauseOf(KEYS[4], now)
if pausedUntil then return { 0, math.max(1, pausedUntil - now), now, pausedUntil, pauseReason, -1 } end

local count, tokens = prune(KEYS[1], KEYS[2], KEYS[3], now - window)
local learned = redis.call('HMGET', KEYS[5], 'rpm', 'tpm', 'reported')
local rpm = effective(tonumber(ARGV[2]), learned[1])
local tpm = effective(tonumber(ARGV[3]), learned[2])

-- A call older than a window is no longer in flight (its worker died, or it never settles).
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - window)
local inflight = redis.call('ZCARD', KEYS[7])
local probe = -1
local slowStart = tonumber(ARGV[5])
if slowStart > 0 and (rpm == 0 or tpm == 0) then
  probe = tonumber(redis.call('HGET', KEYS[6], 'cap'))
  if not probe then probe = slowStart end
  redis.call('HSET', KEYS[6], 'cap', probe)
  redis.call('PEXPIRE', KEYS[6], ARGV[6])
end

local granted, byProbe = 0, false
for i = FIRST, #ARGV do
  local want = tonumber(ARGV[i])
  if not fits(count, tokens, want, rpm, tpm) then break end
  if probe >= 0 and inflight + 1 > probe then
    byProbe = true
    break
  end
  local id = ARGV[4] .. ':' .. (i - FIRST)
  redis.call('ZADD', KEYS[7], now, id)
  inflight = inflight + 1
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('HSET', KEYS[2], id, want)
  count = count + 1
  tokens = tokens + want
  granted = granted + 1
end
if granted > 0 then redis.call('SET', KEYS[3], tokens) end
if granted > 0 then redis.call('PEXPIRE', KEYS[7], 2 * window) end
finish(KEYS[1], KEYS[2], KEYS[3], count, 2 * window)

local waitMs = 0
if granted < #ARGV - FIRST + 1 then
  if byProbe then
    -- Held back by the slow start: a call in flight settles soon and the cap grows.
    redis.call('HSET', KEYS[6], 'held', now)
    waitMs = SLOW_START_RECHECK_MS
  else
    waitMs = waitUntilFits(now, window, count, tokens, tonumber(ARGV[FIRST + granted]), rpm, tpm)
    -- Calls in flight hold their estimate (with its margin) until they settle, usually within
    -- seconds: room comes back long before their window ends, so look again soon.
    if inflight > 0 then waitMs = math.min(waitMs, INFLIGHT_RECHECK_MS) end
  end
  -- A limit the provider reported still binds: keep it (it lapses only once it stops binding).
  if learned[3] then redis.call('PEXPIRE', KEYS[5], ARGV[6]) end
end
return { granted, waitMs, now, -1, '', probe }
`;
