import { LRUCache } from 'lru-cache'
import { performance } from 'node:perf_hooks'
import type { Config } from '../config.js'
import type { Log } from '../logger.js'
import type { Metrics } from '../metrics.js'
import { OutageLog } from '../shared/outage-log.js'
import { timedCall } from '../shared/timed-call.js'
import { traced } from '../tracing/spans.js'
import type { BucketStore, Decision } from './bucket-store.js'
import type { OverrideLimits } from './overrides.js'
import { limitsOf, type Action, type BucketPolicy, type Policies } from './policies.js'

/** What a decision does when the shared store fails or is slow: RATE_LIMIT_FAIL_MODE. */
export type FailMode = Config['RATE_LIMIT_FAIL_MODE']

export type LimiterMetrics = Pick<Metrics, 'bucketDecisions' | 'bucketRemaining' | 'redisDuration' | 'redisErrors'>

export interface LimiterOptions {
  policies: Policies
  /** The agent's own limits for an action (admin overrides), if it has any. */
  override?: (agentId: string, action: Action) => OverrideLimits | undefined
  /** This replica's buckets: the only ones without Redis, the fallback in `local` fail mode. */
  local: BucketStore
  /** Buckets shared by every replica (Redis), with the budget of one decision; absent without Redis. */
  shared?: { store: BucketStore; timeoutMs: number; failMode: FailMode }
  metrics: LimiterMetrics
  log: Log
  /** Milliseconds from any monotonic origin. */
  clock?: () => number
}

/** Buckets known to be empty, remembered at most this many at once. */
const KNOWN_EMPTY_MAX = 10_000
/** How long a fail-closed caller (forward, delivery) is told to wait. */
const CLOSED_RETRY_MS = 1000

/**
 * Token-bucket decisions per agent and action: on the shared store when there is one (every
 * replica sees the same buckets), else on this replica's. A shared store that fails or misses
 * its budget gets the fail mode instead, never an exception. An agent's override replaces its
 * action's numbers; a policy in shadow mode decides and counts, but admits.
 */
export class Limiter {
  private policies: Policies
  private readonly override: NonNullable<LimiterOptions['override']>
  private readonly local: BucketStore
  private readonly shared: LimiterOptions['shared']
  private readonly metrics: LimiterMetrics
  private readonly clock: () => number
  private readonly outage: OutageLog
  /**
   * Buckets (`action:agent`) the shared store refused, with the instant their next token is due:
   * other replicas only take tokens, so until then the answer is the same without asking Redis.
   */
  private readonly knownEmpty: LRUCache<string, number>

  constructor({ policies, override = () => undefined, local, shared, metrics, log, clock = () => performance.now() }: LimiterOptions) {
    this.policies = policies
    this.override = override
    this.local = local
    this.shared = shared
    this.metrics = metrics
    this.clock = clock
    this.outage = new OutageLog(
      log,
      { down: 'bucket store unavailable: applying RATE_LIMIT_FAIL_MODE', up: 'bucket store available again: shared limits apply' },
      { failMode: shared?.failMode }
    )
    // ttlResolution 0: the clock is read on every check, so a fake clock is obeyed at once.
    this.knownEmpty = new LRUCache({ max: KNOWN_EMPTY_MAX, ttlResolution: 0, perf: { now: clock } })
  }

  /** The policy of an action, as configured (BUCKETS_FILE). */
  policy(action: Action): BucketPolicy {
    return this.policies[action]
  }

  /** The policy an agent gets for an action: the configured one with the agent's override, if any. */
  effective(action: Action, agentId: string): BucketPolicy {
    const policy = this.policies[action]
    const own = this.override(agentId, action)
    return own ? { ...policy, ...own } : policy
  }

  /** New policies (SIGHUP): from the next decision on; buckets keep their tokens. */
  setPolicies(policies: Policies): void {
    this.policies = policies
    this.knownEmpty.clear()
  }

  /** The agent's limits changed: what was known about its buckets no longer holds. */
  forget(agentId: string): void {
    for (const action of Object.keys(this.policies)) this.knownEmpty.delete(`${action}:${agentId}`)
  }

  /** One atomic decision on the bucket of `agentId` for `action`; applies the fail mode, never throws for Redis. */
  take(action: Action, agentId: string): Promise<Decision> {
    return traced('bucket.take', () => this.decide(action, agentId), { attributes: { 'moltbridge.action': action } })
  }

  private async decide(action: Action, agentId: string): Promise<Decision> {
    const policy = this.effective(action, agentId)
    if (!this.shared) return this.counted(action, policy, await this.local.take(agentId, action, policy))
    const { store, timeoutMs, failMode } = this.shared
    const bucket = `${action}:${agentId}`
    const started = this.clock()
    const emptyUntil = this.knownEmpty.get(bucket)
    if (emptyUntil !== undefined && started < emptyUntil) return this.counted(action, policy, emptyDecision(policy, emptyUntil - started))

    let decision: Decision
    try {
      decision = await timedCall(this.metrics, 'bucket', timeoutMs, () => store.take(agentId, action, policy))
    } catch (err) {
      this.outage.down(err)
      this.metrics.bucketDecisions.inc({ action, result: `fail_${failMode}` })
      if (failMode === 'local') return shadowed(policy, await this.local.take(agentId, action, policy))
      const limits = limitsOf(policy)
      if (failMode === 'open') return { allowed: true, remaining: policy.capacity, retryAfterMs: 0, resetMs: 0, limits }
      return { allowed: false, remaining: 0, retryAfterMs: CLOSED_RETRY_MS, resetMs: 0, limits, unavailable: true }
    }
    this.outage.up()
    // Measured from before the call: Redis decided no earlier, so this errs on the early side.
    if (!decision.allowed) this.knownEmpty.set(bucket, started + decision.retryAfterMs, { ttl: decision.retryAfterMs, start: started })
    return this.counted(action, policy, decision)
  }

  close(): void {
    this.shared?.store.close()
    this.local.close()
    this.knownEmpty.clear()
  }

  private counted(action: Action, policy: BucketPolicy, decision: Decision): Decision {
    const refused = policy.mode === 'shadow' ? 'shadow_limited' : 'limited'
    this.metrics.bucketDecisions.inc({ action, result: decision.allowed ? 'allowed' : refused })
    this.metrics.bucketRemaining.observe({ action }, decision.remaining)
    return shadowed(policy, decision)
  }
}

/** Under a shadow policy a refusal is admitted anyway (its headers still tell what enforcement would do). */
function shadowed(policy: BucketPolicy, decision: Decision): Decision {
  return decision.allowed || policy.mode !== 'shadow' ? decision : { ...decision, allowed: true, shadow: true }
}

/** The refusal the shared store would give for a bucket whose next token is `retryAfterMs` away. */
function emptyDecision(policy: BucketPolicy, retryAfterMs: number): Decision {
  const waitMs = Math.ceil(retryAfterMs)
  const resetMs = Math.ceil(waitMs + ((policy.capacity - 1) * 1000) / policy.refill_rate)
  return { allowed: false, remaining: 0, retryAfterMs: waitMs, resetMs, limits: limitsOf(policy) }
}
