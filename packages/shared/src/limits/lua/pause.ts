import { NOW_MS_LUA, PAUSE_OF_LUA } from './common.js';

/** Pauses a scope fleet-wide; never shortens a longer pause. */
export const PAUSE_LUA = `--[[
  pause: pauses every reserve() of the scope for ARGV[1] ms (after a 429 with RetryInfo). A
  pause that already lasts longer is kept.

  KEYS[1]  pause: string "<why>|<end, server ms>" (why: 'rate-limited' or 'daily-quota') with a
           PX TTL

  ARGV[1]  pause length, ms (> 0)
  ARGV[2]  reason

  Returns the end of the pause in force, Redis server time in ms.
]]
${NOW_MS_LUA}
${PAUSE_OF_LUA}
local now = nowMs()
local ms = tonumber(ARGV[1])
local pausedUntil = pauseOf(KEYS[1], now)
if pausedUntil and pausedUntil >= now + ms then return pausedUntil end
redis.call('SET', KEYS[1], ARGV[2] .. '|' .. (now + ms), 'PX', ms)
return now + ms
`;
