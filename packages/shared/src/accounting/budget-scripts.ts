import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';

/**
 * The budget guard's Lua scripts: one per atomic operation, each covering a whole batch so the
 * worker pays one round trip. Amounts are integer nano-USD and travel as decimal strings; a sum
 * computed in Lua (a double, exact below 2^53 ≈ $9M) is formatted with `%d` before it is passed
 * back to Redis, never as a float like `4e+14`.
 */

export interface LuaScript {
  lua: string;
  sha: string;
}

function script(lua: string): LuaScript {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/**
 * Sweeps the expired reservations of one tenant group (Lua snippet, shared by the scripts below).
 * A reservation expires only when its holder stopped renewing it (the worker died, or lost its
 * job locks): its call may have reached the provider, which bills it, so its amount (the estimate)
 * is charged to the day and month spend, not dropped. A holder that was only slow and settles
 * later adds just what its actual cost exceeds that estimate (SETTLE_SCRIPT).
 * Expects `base` (its group's first KEYS index − 1), `now`, `dayTtl`, `monthTtl` in scope.
 */
const SWEEP_LUA = `
  local expired = redis.call('ZRANGEBYSCORE', KEYS[base + 2], '-inf', now)
  if #expired > 0 then
    local freed = 0
    for _, member in ipairs(expired) do
      freed = freed + tonumber(string.match(member, ':(%d+)$'))
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[base + 2], '-inf', now)
    -- A missing key reads as 0; a negative remainder (the key expired meanwhile) is dropped.
    if redis.call('DECRBY', KEYS[base + 1], string.format('%d', freed)) < 0 then
      redis.call('DEL', KEYS[base + 1])
    end
    if freed > 0 then
      redis.call('INCRBY', KEYS[base + 3], string.format('%d', freed))
      redis.call('EXPIRE', KEYS[base + 3], dayTtl)
      redis.call('INCRBY', KEYS[base + 4], string.format('%d', freed))
      redis.call('EXPIRE', KEYS[base + 4], monthTtl)
    end
  end
`;

/**
 * Reserves estimated costs for a batch, all or nothing per request.
 *
 * KEYS: 4 per tenant group g (1-based), at 4(g-1)+1…4(g-1)+4 (BudgetGuard passes one tenant per
 *   call, whose keys share one Redis Cluster slot; several groups work on a single Redis):
 *   reserved (string: nano-USD held by open reservations), reservations (zset: member `<id>:<nano>`,
 *   score = expiry epoch ms), day spent (string), month spent (string).
 * ARGV[1] now (epoch ms), ARGV[2] expiry of new reservations (epoch ms), ARGV[3] TTL of the
 *   reserved/reservations keys (ms), ARGV[4] day-spent TTL (s), ARGV[5] month-spent TTL (s); then
 *   5 per request: group, want (nano), daily limit (nano, -1 = none), monthly limit (nano, -1 = none),
 *   member.
 * Returns 3 numbers per request: code, spent (nano, of the scope the code names; 0 when granted),
 *   reserved (nano, the tenant's open reservations before this request). Codes: 0 granted;
 *   1 / 2 the daily / monthly budget is spent (spent + want > limit: no settle can make room this
 *   period); 3 / 4 daily / monthly busy (spent + want fits, but not with what is in flight: room
 *   comes back when in-flight calls settle). A spent scope is reported before a busy one.
 *
 * First, per group, expired reservations are swept (see SWEEP_LUA: charged at their amount).
 */
export const RESERVE_SCRIPT = script(`
local now = tonumber(ARGV[1])
local dayTtl = ARGV[4]
local monthTtl = ARGV[5]
for g = 1, #KEYS / 4 do
  local base = (g - 1) * 4
${SWEEP_LUA}
end
local out = {}
for r = 0, (#ARGV - 5) / 5 - 1 do
  local a = 6 + r * 5
  local base = (tonumber(ARGV[a]) - 1) * 4
  local want = tonumber(ARGV[a + 1])
  local daily = tonumber(ARGV[a + 2])
  local monthly = tonumber(ARGV[a + 3])
  local reserved = tonumber(redis.call('GET', KEYS[base + 1]) or '0')
  local daySpent = tonumber(redis.call('GET', KEYS[base + 3]) or '0')
  local monthSpent = tonumber(redis.call('GET', KEYS[base + 4]) or '0')
  local code, spent = 0, 0
  if monthly >= 0 and monthSpent + want > monthly then
    code, spent = 2, monthSpent
  elseif daily >= 0 and daySpent + want > daily then
    code, spent = 1, daySpent
  elseif monthly >= 0 and monthSpent + reserved + want > monthly then
    code, spent = 4, monthSpent
  elseif daily >= 0 and daySpent + reserved + want > daily then
    code, spent = 3, daySpent
  end
  if code == 0 then
    redis.call('INCRBY', KEYS[base + 1], ARGV[a + 1])
    redis.call('ZADD', KEYS[base + 2], ARGV[2], ARGV[a + 4])
    -- Both keys outlive every reservation in them, so they can only expire together, when empty.
    redis.call('PEXPIRE', KEYS[base + 1], ARGV[3])
    redis.call('PEXPIRE', KEYS[base + 2], ARGV[3])
  end
  out[#out + 1] = code
  out[#out + 1] = spent
  out[#out + 1] = reserved
end
return out
`);

/**
 * Settles (or releases) reservations: frees each reservation's amount and adds its actual cost to
 * the day and month spend. A reservation that already expired was charged at its amount when it
 * was swept (SWEEP_LUA): then only the part of the actual cost above that amount is added, so a
 * slow holder is never charged twice.
 *
 * KEYS: 4 per item i (1-based), at 4(i-1)+1…: reserved, reservations, day spent, month spent
 *   (all items of one tenant per call, for Redis Cluster).
 * ARGV[1] day-spent TTL (s), ARGV[2] month-spent TTL (s); then 3 per item: member, reserved
 *   amount (nano), actual cost (nano; 0 for a release).
 * Returns the number of reservations that were still open.
 */
export const SETTLE_SCRIPT = script(`
local open = 0
for i = 0, #KEYS / 4 - 1 do
  local base = i * 4
  local a = 3 + i * 3
  local charge = tonumber(ARGV[a + 2])
  if redis.call('ZREM', KEYS[base + 2], ARGV[a]) == 1 then
    open = open + 1
    if redis.call('DECRBY', KEYS[base + 1], ARGV[a + 1]) < 0 then
      redis.call('DEL', KEYS[base + 1])
    end
  else
    charge = charge - tonumber(ARGV[a + 1])
  end
  if charge > 0 then
    local amount = string.format('%d', charge)
    redis.call('INCRBY', KEYS[base + 3], amount)
    redis.call('EXPIRE', KEYS[base + 3], ARGV[1])
    redis.call('INCRBY', KEYS[base + 4], amount)
    redis.call('EXPIRE', KEYS[base + 4], ARGV[2])
  end
end
return open
`);

/**
 * Renews open reservations whose holder is alive (its batch still running): pushes their expiry
 * out. A reservation already swept (charged at its amount) is not brought back (ZADD XX).
 *
 * KEYS: 2 per item i (1-based), at 2(i-1)+1…: reserved, reservations.
 * ARGV[1] new expiry (epoch ms), ARGV[2] TTL of the keys (ms); then 1 per item: member.
 * Returns the number of reservations renewed.
 */
export const RENEW_SCRIPT = script(`
local renewed = 0
for i = 0, #KEYS / 2 - 1 do
  if redis.call('ZSCORE', KEYS[i * 2 + 2], ARGV[3 + i]) then
    redis.call('ZADD', KEYS[i * 2 + 2], 'XX', ARGV[1], ARGV[3 + i])
    redis.call('PEXPIRE', KEYS[i * 2 + 1], ARGV[2])
    redis.call('PEXPIRE', KEYS[i * 2 + 2], ARGV[2])
    renewed = renewed + 1
  end
end
return renewed
`);

/**
 * Sweeps one tenant's expired reservations (charging them, SWEEP_LUA) and reads its state, for
 * `/v1/usage` and the dashboard: a dead worker's reservations turn into spend even when no job of
 * the tenant runs.
 *
 * KEYS[1..4] reserved, reservations, day spent, month spent.
 * ARGV[1] now (epoch ms), ARGV[2] day-spent TTL (s), ARGV[3] month-spent TTL (s).
 * Returns { day spent, month spent, sum of open reservations } (nano-USD).
 */
export const SWEEP_SCRIPT = script(`
local now = tonumber(ARGV[1])
local dayTtl = ARGV[2]
local monthTtl = ARGV[3]
local base = 0
${SWEEP_LUA}
local reserved = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')) do
  reserved = reserved + tonumber(string.match(member, ':(%d+)$'))
end
return { tonumber(redis.call('GET', KEYS[3]) or '0'), tonumber(redis.call('GET', KEYS[4]) or '0'), reserved }
`);

/** EVALSHA, falling back to EVAL once when the server does not know the script (a restart, a new server). */
export async function runScript(redis: Redis, lua: LuaScript, keys: string[], args: (string | number)[]): Promise<unknown> {
  try {
    return await redis.evalsha(lua.sha, keys.length, ...keys, ...args);
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
    return redis.eval(lua.lua, keys.length, ...keys, ...args);
  }
}
