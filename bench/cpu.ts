/**
 * CPU used by a process and by a Redis server, and the commands a Redis node ran: what the
 * capacity rows of the benchmark divide by the events or ratings they handled.
 */
import { readdirSync, readFileSync } from 'node:fs'
import type { Redis } from 'ioredis'

/**
 * Seconds of CPU a process has used so far, all its threads (JS, GC, libuv pool): the sum of
 * /proc/<pid>/task/<tid>/schedstat's first field (ns on a CPU). Same quantity as utime + stime
 * in /proc/<pid>/stat, without its 10 ms ticks: a replica that does almost nothing still shows.
 */
export function processCpuSeconds(pid: number): number {
  let ns = 0
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0])
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return ns / 1e9
}

/** Seconds of CPU the Redis server has used (INFO cpu: used_cpu_user + used_cpu_sys, its main thread included). */
export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info('cpu')
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0)
  return field('used_cpu_user') + field('used_cpu_sys')
}

/** Redis's own bookkeeping, not work done for the gateway. */
const ADMIN = new Set(['info', 'cluster', 'ping', 'config', 'client', 'command', 'readonly', 'select', 'hello', 'auth'])

/** Calls per command name on one node (INFO commandstats), admin commands left out. */
export async function commandCalls(redis: Redis): Promise<Map<string, number>> {
  const calls = new Map<string, number>()
  for (const [, name, count] of (await redis.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
    const command = name.split('|')[0]
    if (!ADMIN.has(command)) calls.set(command, (calls.get(command) ?? 0) + Number(count))
  }
  return calls
}

export const totalCalls = (calls: Map<string, number>) => [...calls.values()].reduce((sum, count) => sum + count, 0)
