import type { ClientContext, Result } from 'ioredis'
import type { RedisClient } from './client.js'

/**
 * Lua scripts, kept as TS strings beside their stores so the build needs no asset copy. Each is
 * registered once per client under the `moltbridge` prefix (ioredis defineCommand: EVALSHA,
 * and the script is loaded again by itself after a Redis restart), and touches keys of one
 * hash tag only (Redis Cluster).
 */
export interface Script {
  keys: number
  lua: string
}

/** Registers `scripts` as commands `moltbridge<Name>` (declare their types in RedisCommander). */
export function defineScripts(redis: RedisClient, scripts: Record<string, Script>): void {
  for (const [name, { keys, lua }] of Object.entries(scripts)) {
    const command = `moltbridge${name}`
    if (!(command in redis)) redis.defineCommand(command, { numberOfKeys: keys, lua })
  }
}

/** `now_ms()`: Redis's own clock in milliseconds (fractional), so replicas' clocks never matter. */
export const NOW_MS_LUA = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
`

/** KEYS[1] is deleted only while it still holds ARGV[1]: a claim or lease never drops another holder's. */
export const COMPARE_AND_DELETE: Script = {
  keys: 1,
  lua: `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`
}

declare module 'ioredis' {
  interface RedisCommander<Context extends ClientContext> {
    moltbridgeCompareAndDelete(key: string, expected: string): Result<number, Context>
  }
}
