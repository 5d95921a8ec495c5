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
 * Reserves worst-case costs for a batch, all or nothing per request.
 *
 * KEYS: 4 per tenant group g (1-based), at 4(g-1)+1…4(g-1)+4:
 *   reserved (string: nano-USD held by open reservations), reservations (zset: member `<id>:<nano>`,
 *   score = expiry epoch ms), day spent (string), month spent (string).
 * ARGV[1] now (epoch ms), ARGV[2] expiry of new reservations (epoch ms), ARGV[3] TTL of the
 *   reserved/reservations keys (ms); then 5 per request: group, want (nano), daily limit (nano,
 *   -1 = none), monthly limit (nano, -1 = none), member.
 * Returns one code per request: 0 granted, 1 daily budget exhausted, 2 monthly budget exhausted.
 *
 * First, per group, expired reservations (a crashed worker's) are dropped and their amounts freed.
 * A request is granted when spent + reserved + want ≤ limit holds for the month and for the day.
 */
export const RESERVE_SCRIPT = script(`
local now = tonumber(ARGV[1])
for g = 1, #KEYS / 4 do
  local base = (g - 1) * 4
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
  end
end
local codes = {}
for r = 0, (#ARGV - 3) / 5 - 1 do
  local a = 4 + r * 5
  local base = (tonumber(ARGV[a]) - 1) * 4
  local want = tonumber(ARGV[a + 1])
  local daily = tonumber(ARGV[a + 2])
  local monthly = tonumber(ARGV[a + 3])
  local reserved = tonumber(redis.call('GET', KEYS[base + 1]) or '0')
  local code = 0
  if monthly >= 0 and tonumber(redis.call('GET', KEYS[base + 4]) or '0') + reserved + want > monthly then
    code = 2
  elseif daily >= 0 and tonumber(redis.call('GET', KEYS[base + 3]) or '0') + reserved + want > daily then
    code = 1
  end
  if code == 0 then
    redis.call('INCRBY', KEYS[base + 1], ARGV[a + 1])
    redis.call('ZADD', KEYS[base + 2], ARGV[2], ARGV[a + 4])
    -- Both keys outlive every reservation in them, so they can only expire together, when empty.
    redis.call('PEXPIRE', KEYS[base + 1], ARGV[3])
    redis.call('PEXPIRE', KEYS[base + 2], ARGV[3])
  end
  codes[r + 1] = code
end
return codes
`);

/**
 * Settles (or releases) reservations: frees each reservation's amount and adds its actual cost to
 * the day and month spend. A reservation that already expired (and was freed by RESERVE_SCRIPT)
 * still has its actual cost added: the money was spent.
 *
 * KEYS: 4 per item i (1-based), at 4(i-1)+1…: reserved, reservations, day spent, month spent.
 * ARGV[1] day-spent TTL (s), ARGV[2] month-spent TTL (s); then 3 per item: member, reserved
 *   amount (nano), actual cost (nano; 0 for a release).
 * Returns the number of reservations that were still open.
 */
export const SETTLE_SCRIPT = script(`
local open = 0
for i = 0, #KEYS / 4 - 1 do
  local base = i * 4
  local a = 3 + i * 3
  if redis.call('ZREM', KEYS[base + 2], ARGV[a]) == 1 then
    open = open + 1
    if redis.call('DECRBY', KEYS[base + 1], ARGV[a + 1]) < 0 then
      redis.call('DEL', KEYS[base + 1])
    end
  end
  if tonumber(ARGV[a + 2]) > 0 then
    redis.call('INCRBY', KEYS[base + 3], ARGV[a + 2])
    redis.call('EXPIRE', KEYS[base + 3], ARGV[1])
    redis.call('INCRBY', KEYS[base + 4], ARGV[a + 2])
    redis.call('EXPIRE', KEYS[base + 4], ARGV[2])
  end
end
return open
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
