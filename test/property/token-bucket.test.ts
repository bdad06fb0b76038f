import fc from 'fast-check'
import { Redis } from 'ioredis'
import t from 'tap'
import { TAKE_BODY } from '../../src/limits/bucket-store.js'
import { take, type BucketLimits, type BucketState } from '../../src/limits/token-bucket.js'
import { createKeys } from '../../src/redis/keys.js'
import { deletePrefix, REDIS_URL, uniquePrefix } from '../helpers/app.js'

/*
 * The Redis Lua decision and the token-bucket math of src/limits/token-bucket.ts (what the memory
 * store runs) must agree decision for decision. Redis's clock cannot be set, so the script body
 * that production runs after `now_ms()` = Redis TIME runs here after a `now_ms()` that returns
 * the time the test passes in (ARGV[5], after the script's own four): the same Lua, on a clock
 * the test controls. The agent has no admin override: its limits key stays empty.
 *
 * Expiry is Redis's, in real time: the script sets PEXPIRE to the time until the bucket is full
 * again. The test checks that TTL in the same transaction, removes it (PERSIST) so that real time cannot interfere, and
 * deletes the key once that much test time has passed, as Redis would have. The math side drops
 * its state at the same instant, as the memory store's cache does (a bucket full again is no
 * bucket). Both expire strictly after the TTL, like Redis and lru-cache.
 */
const GIVEN_CLOCK = `
local function now_ms() return tonumber(ARGV[5]) end
`
const SCRIPT = `${GIVEN_CLOCK}${TAKE_BODY}`

interface Step {
  /** Milliseconds since the previous decision (0: the same instant). */
  step: number
  cost: number
}

const steps = fc.array(
  fc.record({
    step: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 200 }), fc.double({ min: 0, max: 10_000, noNaN: true })),
    cost: fc.integer({ min: 1, max: 6 })
  }),
  { minLength: 1, maxLength: 60, size: 'medium' }
)
const limits = fc.record({
  capacity: fc.integer({ min: 1, max: 50 }),
  refillRate: fc.oneof(fc.integer({ min: 1, max: 200 }), fc.double({ min: 0.01, max: 1000, noNaN: true }))
})

t.test('the Lua script and the token-bucket math agree decision for decision on random (time step, cost) sequences', async (t) => {
  const prefix = uniquePrefix()
  const redis = new Redis(REDIS_URL)
  t.teardown(async () => {
    await deletePrefix(prefix)
    redis.disconnect()
  })
  const keys = createKeys(prefix)
  let run = 0
  let decisions = 0

  await fc.assert(
    fc.asyncProperty(limits, steps, async (bucket: BucketLimits, sequence: Step[]) => {
      const agent = `prop-${run++}`
      const key = keys.bucket(agent, 'rest')
      let now = 1_000_000
      let state: BucketState | undefined
      /** When the key (and the math's state) is gone: set time + TTL. */
      let expiresAfter = Infinity
      for (const { step, cost } of sequence) {
        now += step
        if (now > expiresAfter) {
          await redis.del(key)
          state = undefined
        }
        const math = take(state, bucket, now, cost)
        // One transaction: no real time passes between the decision and the checks of its key.
        const answers = await redis
          .multi()
          .eval(SCRIPT, 2, key, keys.limits(agent), bucket.capacity, bucket.refillRate, cost, 'rest', now)
          .hget(key, 'tokens')
          .pttl(key)
          .persist(key)
          .exec()
        const [[allowed, remaining, retryAfterMs, resetMs], stored, ttl] = (answers ?? []).map(([err, value]) => {
          if (err) throw err
          return value
        }) as [number[], string | null, number]
        decisions++
        const lua = { allowed: allowed === 1, remaining, retryAfterMs, resetMs }
        const expected = { allowed: math.allowed, remaining: math.remaining, retryAfterMs: math.retryAfterMs, resetMs: math.resetMs }
        if (JSON.stringify(lua) !== JSON.stringify(expected)) {
          throw new Error(`at ${now} cost ${cost}: Lua ${JSON.stringify(lua)}, math ${JSON.stringify(expected)}`)
        }
        if (math.resetMs === 0) {
          if (ttl !== -2) throw new Error(`a full bucket must leave no key (PTTL ${ttl})`)
          state = undefined
          expiresAfter = Infinity
          continue
        }
        if (Number(stored) !== math.state.tokens) throw new Error(`stored tokens ${stored}, math ${math.state.tokens}`)
        // The same transaction, but Redis's clock runs on while it executes (more than a
        // millisecond when the machine is busy): PTTL reads the TTL set, less the time since.
        if (ttl > math.resetMs || ttl <= math.resetMs - 1000) throw new Error(`PTTL ${ttl} for a bucket full again in ${math.resetMs} ms`)
        state = math.state
        expiresAfter = now + math.resetMs
      }
    }),
    { numRuns: 300 }
  )
  t.comment(`${run} random sequences, ${decisions} decisions compared`)
  t.ok(decisions > run, 'every sequence compared its decisions')
})
