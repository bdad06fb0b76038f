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

t.test('an agent override replaces the numbers of its action; forget() drops what was known about it', async (t) => {
  const metrics = createMetrics()
  let own: { refill_rate: number; capacity: number } | undefined = { refill_rate: 1, capacity: 4 }
  const clock = { now: 1_000 }
  const limiter = new Limiter({
    policies,
    override: (agentId, action) => (agentId === 'big' && action === 'rest' ? own : undefined),
    local: new MemoryBucketStore({ clock: () => clock.now }),
    shared: { store: new MemoryBucketStore({ clock: () => clock.now }), timeoutMs: 1000, failMode: 'local' },
    metrics,
    log: pino({ level: 'silent' }),
    clock: () => clock.now
  })
  t.teardown(() => limiter.close())
  const admitted = async (agent: string, count: number) => {
    let allowed = 0
    for (let i = 0; i < count; i++) if ((await limiter.take('rest', agent)).allowed) allowed++
    return allowed
  }
  t.equal(await admitted('big', 6), 4, 'the override capacity')
  t.equal(await admitted('small', 6), 2, 'the policy for the others')
  t.match(await limiter.take('rest', 'big'), { allowed: false, limits: { capacity: 4, refillRate: 1 } }, 'the decision names the limits it used')
  t.equal(limiter.effective('read', 'big'), policies.read, 'other actions keep the policy (the same object)')

  own = { refill_rate: 1000, capacity: 1000 }
  clock.now += 1 // a token at the new rate, none at the old one
  t.equal((await limiter.take('rest', 'big')).allowed, false, 'until forgotten, the bucket is known empty for a second')
  limiter.forget('big')
  t.equal((await limiter.take('rest', 'big')).allowed, true, 'then decided again with the new numbers')
})

t.test('shadow mode: refusals are admitted, counted as shadow_limited, and keep their numbers for the headers', async (t) => {
  const metrics = createMetrics()
  const shadow: Policies = { ...policies, rest: { ...policy, mode: 'shadow' } }
  const limiter = new Limiter({ policies: shadow, local: new MemoryBucketStore(), metrics, log: pino({ level: 'silent' }) })
  t.teardown(() => limiter.close())
  const decisions = await Promise.all(Array.from({ length: 4 }, () => limiter.take('rest', 'agent-s')))
  t.same(decisions.map((d) => d.allowed), [true, true, true, true], 'all admitted')
  t.same(decisions.map((d) => d.shadow ?? false), [false, false, true, true])
  t.same(decisions.map((d) => d.remaining), [1, 0, 0, 0])
  t.equal((await metrics.bucketDecisions.get()).values.find((v) => v.labels.result === 'shadow_limited')?.value, 2)
  t.equal((await limiter.take('read', 'agent-s')).allowed, true)
  t.equal((await limiter.take('read', 'agent-s')).allowed, true)
  t.equal((await limiter.take('read', 'agent-s')).allowed, false, 'an enforced policy still refuses')

  limiter.setPolicies(policies)
  t.equal((await limiter.take('rest', 'agent-s')).allowed, false, 'reloaded without shadow: enforced from the next decision')
})
