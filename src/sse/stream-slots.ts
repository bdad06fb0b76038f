import type { ClientContext, Result } from 'ioredis'
import { scanKeys, type RedisClient } from '../redis/client.js'
import type { Keys } from '../redis/keys.js'
import { defineScripts, NOW_MS_LUA } from '../redis/scripts.js'

export interface SlotResult {
  acquired: boolean
  /** When refused: milliseconds until the oldest slot expires at the latest. */
  retryAfterMs: number
}

/**
 * Open SSE streams per agent, counted across replicas. A slot is held for `ttlMs` and refreshed
 * by its stream's heartbeat, so the slots of a replica that died expire by themselves.
 */
export interface StreamSlots {
  acquire(agentId: string, streamId: string, cap: number, ttlMs: number): Promise<SlotResult>
  refresh(agentId: string, streamId: string, ttlMs: number): Promise<void>
  release(agentId: string, streamId: string): Promise<void>
  /** Open streams per agent (agents with none left out), counted over every replica. */
  counts(): Promise<Map<string, number>>
  close(): Promise<void>
}

export interface MemoryStreamSlotsOptions {
  /** Monotonic milliseconds (slot expiry). */
  now?: () => number
}

/** One process: slots expire by the same rule, counted here only. */
export class MemoryStreamSlots implements StreamSlots {
  /** Per agent: stream id → expiry. */
  private readonly agents = new Map<string, Map<string, number>>()
  private readonly now: () => number

  constructor(options: MemoryStreamSlotsOptions = {}) {
    this.now = options.now ?? (() => performance.now())
  }

  async acquire(agentId: string, streamId: string, cap: number, ttlMs: number): Promise<SlotResult> {
    const now = this.now()
    const slots = this.agents.get(agentId) ?? new Map<string, number>()
    this.agents.set(agentId, slots)
    for (const [heldId, expiry] of slots) if (expiry <= now) slots.delete(heldId)
    if (slots.size >= cap && !slots.has(streamId)) {
      return { acquired: false, retryAfterMs: Math.min(...slots.values()) - now }
    }
    slots.set(streamId, now + ttlMs)
    return { acquired: true, retryAfterMs: 0 }
  }

  async refresh(agentId: string, streamId: string, ttlMs: number): Promise<void> {
    const slots = this.agents.get(agentId)
    if (slots?.has(streamId)) slots.set(streamId, this.now() + ttlMs)
  }

  async release(agentId: string, streamId: string): Promise<void> {
    const slots = this.agents.get(agentId)
    slots?.delete(streamId)
    if (slots?.size === 0) this.agents.delete(agentId)
  }

  async counts(): Promise<Map<string, number>> {
    const now = this.now()
    const counts = new Map<string, number>()
    for (const [agentId, slots] of this.agents) {
      const open = [...slots.values()].filter((expiry) => expiry > now).length
      if (open) counts.set(agentId, open)
    }
    return counts
  }

  async close(): Promise<void> {
    this.agents.clear()
  }
}

/** KEYS[1] sorted set of stream ids scored by expiry (ms, Redis TIME); ARGV: id, cap, ttl ms. */
const ACQUIRE = `${NOW_MS_LUA}
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cap = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= cap then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) - now}
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, 0}
`

/** Refresh only a slot still held (XX): a stream whose slot expired does not squeeze back in over the cap. */
const REFRESH = `${NOW_MS_LUA}
local now = now_ms()
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
`

/** Slots not yet expired by Redis's clock. */
const COUNT = `${NOW_MS_LUA}
return redis.call('ZCOUNT', KEYS[1], '(' .. now_ms(), '+inf')
`

declare module 'ioredis' {
  interface RedisCommander<Context extends ClientContext> {
    moltbridgeSlotCount(key: string): Result<number, Context>
    moltbridgeSlotAcquire(key: string, streamId: string, cap: number, ttlMs: number): Result<[number, number], Context>
    moltbridgeSlotRefresh(key: string, streamId: string, ttlMs: number): Result<number, Context>
  }
}

/** Shared by every replica: one sorted set per agent, expiry by Redis's clock. */
export class RedisStreamSlots implements StreamSlots {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys
  ) {
    defineScripts(redis, {
      SlotAcquire: { keys: 1, lua: ACQUIRE },
      SlotRefresh: { keys: 1, lua: REFRESH },
      SlotCount: { keys: 1, lua: COUNT }
    })
  }

  async acquire(agentId: string, streamId: string, cap: number, ttlMs: number): Promise<SlotResult> {
    const [acquired, retryAfterMs] = await this.redis.moltbridgeSlotAcquire(this.keys.streams(agentId), streamId, cap, ttlMs)
    return { acquired: acquired === 1, retryAfterMs }
  }

  async refresh(agentId: string, streamId: string, ttlMs: number): Promise<void> {
    await this.redis.moltbridgeSlotRefresh(this.keys.streams(agentId), streamId, ttlMs)
  }

  async release(agentId: string, streamId: string): Promise<void> {
    await this.redis.zrem(this.keys.streams(agentId), streamId)
  }

  /** SCAN for the agents' keys (on every primary of a cluster): an admin call, not a hot path. */
  async counts(): Promise<Map<string, number>> {
    const counts = new Map<string, number>()
    for (const key of await scanKeys(this.redis, this.keys.streamsPattern)) {
      const open = await this.redis.moltbridgeSlotCount(key)
      if (open > 0) counts.set(this.keys.agentOfStreams(key), open)
    }
    return counts
  }

  /** The connection belongs to whoever opened it; slots of this replica's streams were released as they closed. */
  async close(): Promise<void> {}
}
