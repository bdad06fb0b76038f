import type { Principal } from '../auth/credentials.js'
import type { Log } from '../logger.js'
import type { RedisClient } from '../redis/client.js'
import type { Keys } from '../redis/keys.js'
import { systemClock, type Clock } from '../shared/clock.js'
import type { Broadcast } from './broadcast.js'
import { ReplicatedMap } from './replicated-map.js'

export type RevocationKind = 'user' | 'agent'

/** `user:<sub>` or `agent:<agent_id>` → revoked at (Unix ms): tokens issued before it are refused. */
export type RevokedSince = Map<string, number>

const member = (kind: RevocationKind, id: string) => `${kind}:${id}`

/** Where revocations are kept, each for `ttlS` seconds (the longest life of a token issued before it). */
export interface RevocationStore {
  add(kind: RevocationKind, id: string, atMs: number, ttlS: number): Promise<void>
  /** Every revocation younger than `ttlS` at `nowMs`. */
  list(nowMs: number, ttlS: number): Promise<RevokedSince>
  close(): Promise<void>
}

/** One replica (no Redis). */
export class MemoryRevocationStore implements RevocationStore {
  private readonly revoked: RevokedSince = new Map()

  async add(kind: RevocationKind, id: string, atMs: number): Promise<void> {
    const key = member(kind, id)
    this.revoked.set(key, Math.max(atMs, this.revoked.get(key) ?? 0))
  }

  async list(nowMs: number, ttlS: number): Promise<RevokedSince> {
    for (const [key, atMs] of this.revoked) if (atMs <= nowMs - ttlS * 1000) this.revoked.delete(key)
    return new Map(this.revoked)
  }

  async close(): Promise<void> {
    this.revoked.clear()
  }
}

/**
 * One sorted set for the fleet (admin actions are rare, and every replica reloads it whole):
 * members `user:<sub>` / `agent:<id>` scored by the revocation time. Old members are trimmed on
 * each add, and the key expires `ttlS` after the last one.
 */
export class RedisRevocationStore implements RevocationStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Pick<Keys, 'revocations'>
  ) {}

  async add(kind: RevocationKind, id: string, atMs: number, ttlS: number): Promise<void> {
    const key = this.keys.revocations
    await this.redis
      .multi()
      .zadd(key, 'GT', atMs, member(kind, id))
      .zremrangebyscore(key, '-inf', atMs - ttlS * 1000)
      .expire(key, ttlS)
      .exec()
  }

  async list(nowMs: number, ttlS: number): Promise<RevokedSince> {
    const flat = await this.redis.zrangebyscore(this.keys.revocations, `(${nowMs - ttlS * 1000}`, '+inf', 'WITHSCORES')
    const revoked: RevokedSince = new Map()
    for (let i = 0; i < flat.length; i += 2) revoked.set(flat[i], Number(flat[i + 1]))
    return revoked
  }

  async close(): Promise<void> {
    /* the connection belongs to the redis plugin */
  }
}

export interface RevocationsDeps {
  store: RevocationStore
  broadcast: Broadcast
  log: Log
  clock?: Clock
}

export interface RevocationsOptions {
  /** How long a revocation is kept: the longest life of the tokens the issuer signs. */
  ttlS: number
  /** Every replica reloads the revocations this often (a missed broadcast is caught up); RELOAD_MS by default. */
  reloadMs?: number
}

/**
 * Revoked users and agents, as every replica knows them: their tokens issued (`iat`) before the
 * revocation are refused, and their open streams are closed. Checked on every authenticated
 * request, so it is a lookup in memory. `iat` has whole seconds: a token of the revocation's
 * own second may have been issued before it, so it is refused too (a new token works from the
 * next second on).
 */
export class Revocations {
  private readonly revoked: ReplicatedMap<number>
  private readonly clock: Clock

  constructor(
    private readonly deps: RevocationsDeps,
    private readonly options: RevocationsOptions
  ) {
    this.clock = deps.clock ?? systemClock
    this.revoked = new ReplicatedMap({
      broadcast: deps.broadcast,
      topic: 'revocation',
      load: () => deps.store.list(this.clock.wallMs(), options.ttlS),
      log: deps.log,
      clock: this.clock
    })
  }

  start(): Promise<void> {
    return this.revoked.start(this.options.reloadMs)
  }

  /** Revokes now: kept in the store, applied here at once and broadcast. Resolves to the time (Unix ms). */
  async revoke(kind: RevocationKind, id: string): Promise<number> {
    const atMs = Math.floor(this.clock.wallMs())
    await this.deps.store.add(kind, id, atMs, this.options.ttlS)
    await this.revoked.publish(member(kind, id), atMs)
    return atMs
  }

  /** True when the caller's user or agent was revoked after its token was issued (no `iat`: issued before). */
  isRevoked(principal: Pick<Principal, 'sub' | 'agentId' | 'iat'>): boolean {
    if (this.revoked.size === 0) return false
    const since = Math.max(this.revoked.get(member('user', principal.sub)) ?? -Infinity, this.revoked.get(member('agent', principal.agentId)) ?? -Infinity)
    return since !== -Infinity && (principal.iat === undefined || principal.iat * 1000 < since)
  }

  /** Called whenever a revocation becomes known here (local, broadcast or reload). Returns unsubscribe. */
  onRevoke(listener: () => void): () => void {
    return this.revoked.onChange((_key, atMs) => {
      if (atMs !== null) listener()
    })
  }

  async close(): Promise<void> {
    this.revoked.close()
    await this.deps.store.close()
  }
}
