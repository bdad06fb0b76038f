import { pino } from 'pino'
import t from 'tap'
import { MemoryBucketStore } from '../../src/limits/bucket-store.js'
import { Limiter } from '../../src/limits/limiter.js'
import type { BucketPolicy, Policies } from '../../src/limits/policies.js'
import { createMetrics } from '../../src/metrics.js'

// 2 tokens, one a second.
const policy: BucketPolicy = { bucket_name: 'slow', refill_rate: 1, capacity: 2, key_selector: 'jwt.claims.agent_id' }
const policies: Policies = { rest: policy, read: policy, forward: policy, delivery: policy }

/** A limiter over a store shared in name only (in memory), all on one clock the test moves. */
function limiterOnFakeClock(t: { teardown(fn: () => unknown): void }) {
  const clock = { now: 1_000 }
  const read = () => clock.now
  const metrics = createMetrics()
  const limiter = new Limiter({
    policies,
    local: new MemoryBucketStore({ clock: read }),
    shared: { store: new MemoryBucketStore({ clock: read }), timeoutMs: 1000, failMode: 'local' },
    metrics,
    log: pino({ level: 'silent' }),
    clock: read
  })
  t.teardown(() => {
    limiter.close()
    metrics.registry.clear()
  })
  const sharedCalls = async () => (await metrics.redisDuration.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value ?? 0
  return { clock, limiter, sharedCalls }
}

t.test('a bucket known to be empty is refused without asking the shared store, until its token is due', async (t) => {
  const { clock, limiter, sharedCalls } = limiterOnFakeClock(t)
  t.ok((await limiter.take('rest', 'agent-1')).allowed)
  t.ok((await limiter.take('rest', 'agent-1')).allowed)
  const refused = await limiter.take('rest', 'agent-1')
  t.match(refused, { allowed: false, remaining: 0, retryAfterMs: 1000 })
  t.equal(await sharedCalls(), 3)

  clock.now += 400
  const local = await limiter.take('rest', 'agent-1')
  t.match(local, { allowed: false, remaining: 0, retryAfterMs: 600, resetMs: 1600 }, 'the same answer the store would give')
  t.equal(await sharedCalls(), 3, 'the shared store was not asked')
  t.ok((await limiter.take('rest', 'agent-2')).allowed, 'other agents are not affected')

  clock.now += 600
  t.ok((await limiter.take('rest', 'agent-1')).allowed, 'asked again, and allowed, the moment the token is due')
  t.equal(await sharedCalls(), 5)
})

t.test('without a shared store the local buckets decide, and nothing is timed as a Redis call', async (t) => {
  const local = new MemoryBucketStore()
  const metrics = createMetrics()
  const limiter = new Limiter({ policies, local, metrics, log: pino({ level: 'silent' }) })
  t.teardown(() => {
    limiter.close()
    metrics.registry.clear()
  })
  const decisions = [await limiter.take('read', 'agent-m'), await limiter.take('read', 'agent-m'), await limiter.take('read', 'agent-m')]
  t.same(decisions.map((d) => d.allowed), [true, true, false])
  t.equal(limiter.policy('read').bucket_name, 'slow')
  t.same((await metrics.redisDuration.get()).values.filter((v) => v.value > 0), [])
})
