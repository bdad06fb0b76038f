/**
 * The soak: N distinct users and items through one gateway replica by POST /v1/rating (a
 * `ratings:write` token over keep-alive connections), then the TTLs run out and the replica's
 * RSS must come back down. Shared by `npm run soak` (bench/soak.ts) and test/chaos/soak.test.ts.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { Redis } from 'ioredis'
import { Pool } from 'undici'
import { WebSocket } from 'ws'
import { rssMb } from '../test/helpers/rss.js'

export { rssMb }

export type SoakMode = 'memory' | 'redis'

/** History, scores and dedup TTL of the soaked replica (seconds): short, so the soak sees them run out. */
export const SOAK_TTL_S = 3

/** A BUCKETS_FILE generous enough that the soak measures state, not throttling; remove its dir after. */
export async function generousBuckets(): Promise<{ file: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'mb-soak-'))
  const big = { key_selector: 'jwt.claims.agent_id', capacity: 1e9, refill_rate: 1e9 }
  const file = join(dir, 'buckets.json')
  await writeFile(file, JSON.stringify(['rest', 'read', 'forward', 'delivery'].map((action) => ({ action, bucket_name: `soak-${action}`, ...big }))))
  return { file, remove: () => rm(dir, { recursive: true, force: true }) }
}

/** The soaked replica's settings (add PORT, HOST, LOG_LEVEL as the caller likes). */
export function soakEnv(options: {
  mode: SoakMode
  secret: string
  openclaw: { url: string; apiKey: string }
  bucketsFile: string
  redisUrl: string
  prefix: string
}): Record<string, string> {
  const ttl = String(SOAK_TTL_S)
  return {
    JWT_SECRET: options.secret,
    OPENCLAW_URL: options.openclaw.url,
    OPENCLAW_API_KEY: options.openclaw.apiKey,
    BUCKETS_FILE: options.bucketsFile,
    HISTORY_TTL: ttl,
    SCORES_TTL: ttl,
    DEDUP_TTL: ttl,
    IP_RATE_LIMIT_MAX: '0',
    // The load generator shares the machine: its event-loop delay must not make the replica shed load.
    UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0',
    ...(options.mode === 'redis' ? { REDIS_URL: options.redisUrl, KEY_PREFIX: options.prefix } : {})
  }
}

/** Every key of the soak's users (`drive` with this `tag`): `{u:<user>}` is their hash tag (src/redis/keys.ts). */
export const userKeys = (prefix: string, tag: string) => `${prefix}:{u:${tag}-u*`

/** V8 heap in use (MB) from the replica's /metrics: tells memory held from memory V8 has not given back. */
export async function heapUsedMb(url: string): Promise<number> {
  const text = await fetch(`${url}/metrics`).then((r) => r.text(), () => '')
  return Number(/^moltbridge_nodejs_heap_size_used_bytes (\S+)/m.exec(text)?.[1] ?? 0) / 2 ** 20
}

/** A token that may rate for any user (scope `ratings:write`), valid for an hour. */
export function serviceToken(secret: string): Promise<string> {
  return new SignJWT({ sub: 'soak-service', agent_id: 'soak-service', scope: 'ratings:write' })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(secret))
}

export interface DriveResult {
  /** Answers by status code. */
  statuses: Record<number, number>
  /** Highest RSS sampled while driving (MB). */
  peakMb: number
  seconds: number
}

/**
 * `count` POST /v1/rating, each for a user and an item of its own (`<tag>-u<i>`, `<tag>-i<i>`),
 * `concurrency` at a time over keep-alive connections; samples the replica's RSS meanwhile.
 */
export async function drive(options: { url: string; pid: number; token: string; count: number; concurrency: number; tag: string }): Promise<DriveResult> {
  const { url, pid, token, count, concurrency, tag } = options
  const pool = new Pool(url, { connections: concurrency, pipelining: 1 })
  const statuses: Record<number, number> = {}
  let peakMb = await rssMb(pid)
  const sampler = setInterval(() => void rssMb(pid).then((mb) => (peakMb = Math.max(peakMb, mb))), 200)
  const started = performance.now()
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' }
  const timestamp = Math.floor(Date.now() / 1000)
  let next = 0
  const worker = async () => {
    while (next < count) {
      const i = next++
      const body = JSON.stringify({ user_id: `${tag}-u${i}`, item_id: `${tag}-i${i}`, timestamp, rating: (i % 50) / 10 })
      const res = await pool.request({ method: 'POST', path: '/v1/rating', headers, body })
      await res.body.dump()
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
    }
  }
  try {
    await Promise.all(Array.from({ length: concurrency }, worker))
  } finally {
    clearInterval(sampler)
    await pool.close()
  }
  peakMb = Math.max(peakMb, await rssMb(pid))
  return { statuses, peakMb, seconds: (performance.now() - started) / 1000 }
}

/** Lets the replica's inspector in: start it with this in NODE_OPTIONS to call `collectGarbage`. */
export const INSPECT = '--inspect=127.0.0.1:0'

/** The inspector's WebSocket URL from what the replica wrote (`Debugger listening on ws://...`). */
export function inspectorUrl(output: string): string {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(output)?.[1]
  if (!url) throw new Error('the replica was not started with --inspect')
  return url
}

/**
 * A full GC in the replica (HeapProfiler.collectGarbage), then its RSS once V8 gave pages back.
 * An idle V8 heap is not collected by itself, so without this the RSS measures garbage, not
 * what the replica holds.
 */
export async function rssAfterGc(pid: number, inspector: string): Promise<number> {
  const ws = new WebSocket(inspector)
  try {
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject))
    ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }))
    await new Promise((resolve) => ws.once('message', resolve))
  } finally {
    ws.close()
  }
  await new Promise((resolve) => setTimeout(resolve, 1000))
  return rssMb(pid)
}

/** Keys matching `pattern` now (SCAN), and a sample of them; `remove` deletes them as they are found. */
export async function countKeys(redisUrl: string, pattern: string, remove = false): Promise<{ count: number; sample: string[] }> {
  const redis = new Redis(redisUrl)
  try {
    let cursor = '0'
    let count = 0
    const sample: string[] = []
    do {
      const [nextCursor, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = nextCursor
      count += keys.length
      if (remove && keys.length) await redis.del(...keys)
      sample.push(...keys.slice(0, Math.max(0, 5 - sample.length)))
    } while (cursor !== '0')
    return { count, sample }
  } finally {
    redis.disconnect()
  }
}
