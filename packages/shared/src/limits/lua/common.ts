/**
 * Lua helpers shared by the limiter scripts, pasted into each script (Redis has no includes).
 *
 * Data layout of one scope (all keys share one hash tag, see `limiterKey`):
 * - `log`   sorted set: member = reservation id, score = reservation time (Redis server ms)
 * - `est`   hash: reservation id → tokens (the estimate, replaced by the actual count on settle)
 * - `total` string: sum of `est`, kept up to date so a reservation costs no O(window) sum
 * A reservation with score s counts while now < s + window.
 */

/** `nowMs()`: Redis server time in ms, so that workers with skewed clocks agree. */
export const NOW_MS_LUA = `
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;

/**
 * `pauseOf(key, now)`: end (server ms) and reason of the fleet pause in force, or nil. The pause
 * key holds "<reason>|<end>" with a PX TTL, so every reader reports the same end: now + PTTL
 * drifts by a millisecond between scripts, because TIME and the expiry clock are read apart.
 * A value without an end (written before the end was stored) falls back to now + PTTL.
 */
export const PAUSE_OF_LUA = `
local function pauseOf(key, now)
  local remaining = redis.call('PTTL', key)
  if remaining <= 0 then return nil end
  local value = redis.call('GET', key) or ''
  local reason, untilMs = string.match(value, '^(.-)|(%d+)$')
  if untilMs then return tonumber(untilMs), reason end
  return now + remaining, value
end
`;

/** `effective(configured, learned)`: min of the two where 0 / nil mean unlimited. */
export const EFFECTIVE_LUA = `
local function effective(configured, learned)
  local l = tonumber(learned)
  if not l then return configured end
  if configured == 0 then return l end
  return math.min(configured, l)
end
`;

/**
 * Writing helpers. `prune(log, est, total, cutoff)` drops reservations with score <= cutoff, takes
 * their tokens off the total and returns the window's (count, tokens); pages of 500 keep unpack()
 * within Lua's stack limit. `finish(log, est, total, count, ttl)` refreshes the TTLs (or deletes
 * the keys of an empty window) so that idle scopes disappear.
 */
export const PRUNE_LUA = `
local function prune(logKey, estKey, totalKey, cutoff)
  local stored = redis.call('GET', totalKey)
  local freed = 0
  while true do
    local ids = redis.call('ZRANGEBYSCORE', logKey, '-inf', cutoff, 'LIMIT', 0, 500)
    if #ids == 0 then break end
    local est = redis.call('HMGET', estKey, unpack(ids))
    for i = 1, #ids do freed = freed + (tonumber(est[i]) or 0) end
    redis.call('HDEL', estKey, unpack(ids))
    redis.call('ZREM', logKey, unpack(ids))
  end
  local count = redis.call('ZCARD', logKey)
  if count == 0 then return 0, 0 end
  local tokens = 0
  if stored then
    tokens = math.max(0, tonumber(stored) - freed)
  else
    -- The total went missing (evicted?) while reservations remain: rebuild it once from the hash.
    for _, v in ipairs(redis.call('HVALS', estKey)) do tokens = tokens + tonumber(v) end
  end
  if freed > 0 or not stored then redis.call('SET', totalKey, tokens, 'KEEPTTL') end
  return count, tokens
end

local function finish(logKey, estKey, totalKey, count, ttl)
  if count == 0 then
    redis.call('DEL', logKey, estKey, totalKey)
  else
    redis.call('PEXPIRE', logKey, ttl)
    redis.call('PEXPIRE', estKey, ttl)
    redis.call('PEXPIRE', totalKey, ttl)
  end
end
`;
