import { take, type BucketLimits, type BucketState, type TakeResult } from '../limits/token-bucket.js'

/**
 * One agent's delivery bucket on this replica, shared by that agent's streams here: asking Redis
 * once per event per stream would cost more than sending the event. Across replicas an agent can
 * receive up to (replicas × policy), which only bounds a browser's load.
 */
export class DeliveryBucket {
  private state: BucketState | undefined
  /** Streams of the agent on this replica that share the bucket. */
  streams = 0

  constructor(private readonly limits: BucketLimits) {}

  /** One token at `now` (monotonic ms) if there is one; else `retryAfterMs` says when. */
  take(now: number): TakeResult {
    const decision = take(this.state, this.limits, now)
    if (decision.allowed) this.state = decision.state
    return decision
  }
}
