import { Type, type Static } from 'typebox'
import type { Broadcast } from '../admin/broadcast.js'
import { ReplicatedMap } from '../admin/replicated-map.js'
import type { Log } from '../logger.js'
import type { RedisClient } from '../redis/client.js'
import type { Keys } from '../redis/keys.js'
import type { Clock } from '../shared/clock.js'
import { ACTIONS, BucketPolicySchema, type Action } from './policies.js'

/** One action's numbers in an override: the policy's, for this agent only. */
export const OverrideLimitsSchema = Type.Object(
  { refill_rate: BucketPolicySchema.properties.refill_rate, capacity: BucketPolicySchema.properties.capacity },
  { additionalProperties: false }
)
export type OverrideLimits = Static<typeof OverrideLimitsSchema>

/** An agent's overrides: `{ "<action>": { refill_rate, capacity } }`, at least one action. */
export const AgentLimitsSchema = Type.Object(
  Object.fromEntries(ACTIONS.map((action) => [action, Type.Optional(OverrideLimitsSchema)])) as Record<
    Action,
    Type.TOptional<typeof OverrideLimitsSchema>
  >,
  { additionalProperties: false, minProperties: 1 }
)
export type AgentLimits = Partial<Record<Action, OverrideLimits>>

/** Where overrides are kept: per agent, replaced whole by `set`. */
export interface OverrideStore {
  set(agentId: string, limits: AgentLimits): Promise<void>
  /** False when the agent had none. */
  remove(agentId: string): Promise<boolean>
  list(): Promise<Map<string, AgentLimits>>
  close(): Promise<void>
}

/** One replica (no Redis). */
export class MemoryOverrideStore implements OverrideStore {
  private readonly agents = new Map<string, AgentLimits>()

  async set(agentId: string, limits: AgentLimits): Promise<void> {
    this.agents.set(agentId, limits)
  }

  async remove(agentId: string): Promise<boolean> {
    return this.agents.delete(agentId)
  }

  async list(): Promise<Map<string, AgentLimits>> {
    return new Map(this.agents)
  }

  async close(): Promise<void> {
    this.agents.clear()
  }
}

/** The hash fields the bucket script reads (src/limits/bucket-store.ts): `<action>:capacity`, `<action>:refill_rate`. */
function fields(limits: AgentLimits): Record<string, number> {
  const flat: Record<string, number> = {}
  for (const [action, own] of Object.entries(limits)) {
    flat[`${action}:capacity`] = own.capacity
    flat[`${action}:refill_rate`] = own.refill_rate
  }
  return flat
}

/**
 * In Redis, twice: a hash in the agent's own slot, read by the bucket script in the same atomic
 * step as the decision (every replica applies a change at its next decision), and an index of
 * every overridden agent that replicas reload whole.
 */
export class RedisOverrideStore implements OverrideStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Pick<Keys, 'limits' | 'overrides'>
  ) {}

  async set(agentId: string, limits: AgentLimits): Promise<void> {
    const own = this.keys.limits(agentId)
    await this.redis.multi().del(own).hset(own, fields(limits)).exec()
    await this.redis.hset(this.keys.overrides, agentId, JSON.stringify(limits))
  }

  async remove(agentId: string): Promise<boolean> {
    const [removed] = await Promise.all([this.redis.hdel(this.keys.overrides, agentId), this.redis.del(this.keys.limits(agentId))])
    return removed > 0
  }

  async list(): Promise<Map<string, AgentLimits>> {
    const all = await this.redis.hgetall(this.keys.overrides)
    return new Map(Object.entries(all).map(([agentId, json]) => [agentId, JSON.parse(json) as AgentLimits]))
  }

  async close(): Promise<void> {
    /* the connection belongs to the redis plugin */
  }
}

export interface OverridesDeps {
  store: OverrideStore
  broadcast: Broadcast
  log: Log
  clock?: Clock
}

/**
 * Per-agent bucket overrides as this replica knows them: for the buckets decided here (memory
 * store, the local fail mode, SSE delivery). The Redis bucket script reads the agent's hash
 * itself, so the shared buckets never wait for this copy.
 */
export class Overrides {
  private readonly agents: ReplicatedMap<AgentLimits>

  constructor(private readonly deps: OverridesDeps) {
    this.agents = new ReplicatedMap({ broadcast: deps.broadcast, topic: 'limits', load: () => deps.store.list(), log: deps.log, clock: deps.clock })
  }

  start(reloadMs?: number): Promise<void> {
    return this.agents.start(reloadMs)
  }

  /** Replaces the agent's overrides: stored, applied here at once, broadcast. */
  async set(agentId: string, limits: AgentLimits): Promise<void> {
    await this.deps.store.set(agentId, limits)
    await this.agents.publish(agentId, limits)
  }

  /** Removes the agent's overrides (its policies apply again); false when it had none. */
  async remove(agentId: string): Promise<boolean> {
    const removed = await this.deps.store.remove(agentId)
    await this.agents.publish(agentId, null)
    return removed
  }

  /** Every agent's overrides, as stored. */
  list(): Promise<Map<string, AgentLimits>> {
    return this.deps.store.list()
  }

  get(agentId: string, action: Action): OverrideLimits | undefined {
    return this.agents.size === 0 ? undefined : this.agents.get(agentId)?.[action]
  }

  /** Called with the agent whose overrides changed here. Returns unsubscribe. */
  onChange(listener: (agentId: string) => void): () => void {
    return this.agents.onChange((agentId) => listener(agentId))
  }

  async close(): Promise<void> {
    this.agents.close()
    await this.deps.store.close()
  }
}
