import { NOW_MS_LUA } from './common.js';

/** Pauses a scope fleet-wide; never shortens a longer pause. */
export const PAUSE_LUA = `--[[
  pause: pauses every reserve() of the scope for ARGV[1] ms (after a 429 with RetryInfo). A
  pause that already lasts longer is kept.

  KEYS[1]  pause: string (why: 'rate-limited' or 'daily-quota') with a PX TTL

  ARGV[1]  pause length, ms (> 0)
  ARGV[2]  reason

  Returns the end of the pause in force, Redis server time in ms.
]]
${NOW_MS_LUA}

local now = nowMs()
local ms = tonumber(ARGV[1])
local remaining = redis.call('PTTL', KEYS[1])
if remaining >= ms then return now + remaining end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ms)
return now + ms
`;
