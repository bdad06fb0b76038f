import { LRUCache } from 'lru-cache'
import { performance } from 'node:perf_hooks'
import type { Config } from '../config.js'
import type { Log } from '../logger.js'
import type { Metrics } from '../metrics.js'
import { OutageLog } from '../shared/outage-log.js'
import { timedCall } from '../shared/timed-call.js'
import type { BucketStore, Decision } from './bucket-store.js'
import type { Action, BucketPolicy, Policies } from './policies.js'

/** What a decision does when the shared store fails or is slow: RATE_LIMIT_FAIL_MODE. */
export type FailMode = Config['RATE_LIMIT_FAIL_MODE']

export type LimiterMetrics = Pick<Metrics, 'bucketDecisions' | 'bucketRemaining' | 'redisDuration' | 'redisErrors'>

export interface LimiterOptions {
  policies: Policies
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
 * its budget gets the fail mode instead, never an exception.
 */
export class Limiter {
  private readonly policies: Policies
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

  constructor({ policies, local, shared, metrics, log, clock = () => performance.now() }: LimiterOptions) {
    this.policies = policies
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

  policy(action: Action): BucketPolicy {
    return this.policies[action]
  }

  /** One atomic decision on the bucket of `agentId` for `action`; applies the fail mode, never throws for Redis. */
  async take(action: Action, agentId: string): Promise<Decision> {
    const policy = this.policies[action]
    if (!this.shared) return this.counted(action, await this.local.take(agentId, action, policy))
    const { store, timeoutMs, failMode } = this.shared
    const bucket = `${action}:${agentId}`
    const started = this.clock()
    const emptyUntil = this.knownEmpty.get(bucket)
    if (emptyUntil !== undefined && started < emptyUntil) return this.counted(action, emptyDecision(policy, emptyUntil - started))

    let decision: Decision
    try {
      decision = await timedCall(this.metrics, 'bucket', timeoutMs, () => store.take(agentId, action, policy))
    } catch (err) {
      this.outage.down(err)
      this.metrics.bucketDecisions.inc({ action, result: `fail_${failMode}` })
      if (failMode === 'local') return this.local.take(agentId, action, policy)
      if (failMode === 'open') return { allowed: true, remaining: policy.capacity, retryAfterMs: 0, resetMs: 0 }
      return { allowed: false, remaining: 0, retryAfterMs: CLOSED_RETRY_MS, resetMs: 0, unavailable: true }
    }
    this.outage.up()
    // Measured from before the call: Redis decided no earlier, so this errs on the early side.
    if (!decision.allowed) this.knownEmpty.set(bucket, started + decision.retryAfterMs, { ttl: decision.retryAfterMs, start: started })
    return this.counted(action, decision)
  }

  close(): void {
    this.shared?.store.close()
    this.local.close()
    this.knownEmpty.clear()
  }

  private counted(action: Action, decision: Decision): Decision {
    this.metrics.bucketDecisions.inc({ action, result: decision.allowed ? 'allowed' : 'limited' })
    this.metrics.bucketRemaining.observe({ action }, decision.remaining)
    return decision
  }
}

/** The refusal the shared store would give for a bucket whose next token is `retryAfterMs` away. */
function emptyDecision(policy: BucketPolicy, retryAfterMs: number): Decision {
  const waitMs = Math.ceil(retryAfterMs)
  return { allowed: false, remaining: 0, retryAfterMs: waitMs, resetMs: Math.ceil(waitMs + ((policy.capacity - 1) * 1000) / policy.refill_rate) }
}
