import fp from 'fastify-plugin'

export type Action = 'rest' | 'read' | 'forward' | 'delivery'

export interface BucketPolicy {
  bucket_name: string
  refill_rate: number
  capacity: number
  key_selector: string
}

export interface Decision {
  allowed: boolean
  /** Tokens left after this decision (whole tokens). */
  remaining: number
  /** Milliseconds until the next token is due (0 when one is available). */
  retryAfterMs: number
  /** Milliseconds until the bucket is full again. */
  resetMs: number
}

declare module 'fastify' {
  interface FastifyInstance {
    buckets: {
      /** One atomic decision for `key` under the action's policy; applies the fail mode, never throws for Redis. */
      take(action: Action, key: string): Promise<Decision>
      policy(action: Action): BucketPolicy
    }
  }
  interface FastifyContextConfig {
    /** Charge the caller's bucket of this action before the handler (429 + RateLimit headers). */
    bucket?: Action
  }
}

// PLACEHOLDER: replaced by the buckets work.
export default fp(async () => {}, { name: 'buckets' })
