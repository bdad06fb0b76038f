import { limitsOf, type BucketPolicy } from '../limits/policies.js'
import { take, type BucketLimits, type BucketState, type TakeResult } from '../limits/token-bucket.js'

/** What an agent's delivery bucket follows now: its limits (policy or override), and shadow mode (count, never hold back). */
export interface DeliveryRule {
  limits: BucketLimits
  shadow: boolean
}

/**
 * The delivery rule of an agent from its delivery policy now, made once per policy object (it is
 * read for every event sent; an agent without an override shares the configured policy's rule).
 */
export function deliveryRules(policyOf: (agentId: string) => BucketPolicy): (agentId: string) => DeliveryRule {
  const rules = new WeakMap<BucketPolicy, DeliveryRule>()
  return (agentId) => {
    const policy = policyOf(agentId)
    let rule = rules.get(policy)
    if (!rule) {
      rule = { limits: limitsOf(policy), shadow: policy.mode === 'shadow' }
      rules.set(policy, rule)
    }
    return rule
  }
}

/**
 * One agent's delivery bucket on this replica, shared by that agent's streams here: asking Redis
 * once per event per stream would cost more than sending the event. Across replicas an agent can
 * receive up to (replicas × policy), which only bounds a browser's load. The rule is read at
 * every take, so a changed policy or override applies to open streams too.
 */
export class DeliveryBucket {
  private state: BucketState | undefined
  /** Streams of the agent on this replica that share the bucket. */
  streams = 0

  constructor(
    private readonly agentId: string,
    /** The delivery rule of an agent now: the hub's, shared by every agent's bucket (no closure per agent). */
    private readonly ruleOf: (agentId: string) => DeliveryRule,
    /** A shadow policy would have held an event back (it was sent). */
    private readonly shadowLimited: () => void = () => {}
  ) {}

  /** True when a token is there at `now` (nothing is taken). */
  hasToken(now: number): boolean {
    const { limits, shadow } = this.ruleOf(this.agentId)
    return shadow || take(this.state, limits, now).allowed
  }

  /** One token at `now` (monotonic ms) if there is one; else `retryAfterMs` says when. */
  take(now: number): TakeResult {
    const { limits, shadow } = this.ruleOf(this.agentId)
    const decision = take(this.state, limits, now)
    if (decision.allowed) {
      this.state = decision.state
      return decision
    }
    if (!shadow) return decision
    this.shadowLimited()
    return { ...decision, allowed: true }
  }
}
