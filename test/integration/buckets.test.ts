import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t from 'tap'
import type { BucketPolicy } from '../../src/limits/policies.js'
import { MemoryBucketStore, RedisBucketStore, type BucketStore } from '../../src/limits/bucket-store.js'
import { createKeys, type Keys } from '../../src/redis/keys.js'
import { REDIS_URL, buildTestApp, deletePrefix, uniquePrefix, type Teardown } from '../helpers/app.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'
import { policiesFile } from '../helpers/policies.js'
import { mint } from '../helpers/tokens.js'

// 5 tokens, one every 100 ms.
const policy: BucketPolicy = { bucket_name: 'test', refill_rate: 10, capacity: 5, key_selector: 'jwt.claims.agent_id' }

async function redisClient(t: Teardown): Promise<Redis> {
  const redis = new Redis(REDIS_URL, { lazyConnect: true })
  await redis.connect()
  t.teardown(() => redis.quit())
  return redis
}

/** A BUCKETS_FILE for one test, with these policies. */

const stores: Array<[string, (t: Teardown) => Promise<{ store: BucketStore; redis?: Redis; keys?: Keys }>]> = [
  ['memory', async (t) => {
    const store = new MemoryBucketStore()
    t.teardown(() => store.close())
    return { store }
  }],
  ['redis', async (t) => {
    const redis = await redisClient(t)
    const prefix = uniquePrefix()
    t.teardown(() => deletePrefix(prefix))
    const keys = createKeys(prefix)
    return { store: new RedisBucketStore(redis, keys), redis, keys }
  }]
]

for (const [name, open] of stores) {
  t.test(`${name} store`, async (t) => {
    const { store, redis, keys } = await open(t)
    const take = (agent: string) => store.take(agent, 'rest', policy)

    t.test('a burst of capacity passes, then refused with the time to the next token', async (t) => {
      const decisions = await Promise.all(Array.from({ length: 8 }, () => take('agent-burst')))
      t.equal(decisions.filter((d) => d.allowed).length, 5)
      t.same(decisions.filter((d) => d.allowed).map((d) => d.remaining).sort(), [0, 1, 2, 3, 4])
      for (const d of decisions.filter((d) => !d.allowed)) {
        t.equal(d.remaining, 0)
        t.ok(d.retryAfterMs > 0 && d.retryAfterMs <= 100, `retryAfter ${d.retryAfterMs} within one token interval`)
      }
    })

    t.test('a retry at the advertised time succeeds, and reset is the time to full', async (t) => {
      for (let i = 0; i < 5; i++) await take('agent-retry')
      const refused = await take('agent-retry')
      t.notOk(refused.allowed)
      t.ok(refused.resetMs > 400 && refused.resetMs <= 500, `resetMs ${refused.resetMs} ~ 5 tokens at 100 ms`)
      await sleep(refused.retryAfterMs)
      const retried = await take('agent-retry')
      t.ok(retried.allowed, 'the next token is there at the advertised time')
    })

    t.test('tokens refill while waiting, never above capacity', async (t) => {
      for (let i = 0; i < 5; i++) await take('agent-refill')
      await sleep(350)
      const after = await Promise.all(Array.from({ length: 5 }, () => take('agent-refill')))
      const allowed = after.filter((d) => d.allowed).length
      t.ok(allowed >= 3 && allowed <= 5, `${allowed} tokens came back in 350 ms at 10/s`)
      await sleep(1000)
      const full = await Promise.all(Array.from({ length: 7 }, () => take('agent-refill')))
      t.equal(full.filter((d) => d.allowed).length, 5, 'a long wait gives back capacity, not more')
    })

    t.test('state goes away once the bucket would be full again', async (t) => {
      const d = await take('agent-expire')
      t.equal(d.resetMs, 100)
      if (redis && keys) {
        const key = keys.bucket('agent-expire', 'rest')
        const pttl = await redis.pttl(key)
        t.ok(pttl > 0 && pttl <= 100, `PTTL ${pttl} <= time to full`)
        await sleep(150)
        t.equal(await redis.exists(key), 0, 'key expired')
      } else {
        const memory = store as MemoryBucketStore
        t.ok(memory.size > 0)
        await sleep(600) // every bucket of this store (at most 5 tokens short) is full again
        memory.sweep()
        t.equal(memory.size, 0, 'full buckets are swept')
      }
    })
  })
}

t.test('the memory store is bounded: least recently used buckets go first', async (t) => {
  const store = new MemoryBucketStore({ maxEntries: 3 })
  t.teardown(() => store.close())
  for (const agent of ['a', 'b', 'c', 'd']) await store.take(agent, 'rest', policy)
  t.equal(store.size, 3)
})

t.test('two replicas on one Redis share one bucket', async (t) => {
  const prefix = uniquePrefix()
  t.teardown(() => deletePrefix(prefix))
  const file = await policiesFile(t, [{ action: 'rest', bucket_name: 'shared', refill_rate: 0.01, capacity: 10, key_selector: 'jwt.claims.agent_id' }])
  const env = { KEY_PREFIX: prefix, BUCKETS_FILE: file, REDIS_TIMEOUT_MS: '2000' }
  const [a, b] = [await buildTestApp(t, env), await buildTestApp(t, env)]
  const decisions = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).buckets.take('rest', 'agent-shared')))
  t.equal(decisions.filter((d) => d.allowed).length, 10, 'together no more than one bucket')
  t.equal(a.buckets.policy('rest').bucket_name, 'shared')
  t.equal(a.buckets.policy('read').bucket_name, 'moltbook-agent-bucket', 'unlisted actions keep the default')
})

t.test('100 agents x 50 concurrent takes: each admitted capacity plus what refilled', async (t) => {
  const app = await buildTestApp(t, { REDIS_TIMEOUT_MS: '5000' })
  const { capacity, refill_rate } = app.buckets.policy('forward')
  const started = performance.now()
  const results = await Promise.all(
    Array.from({ length: 100 }, async (_, agent) => {
      const decisions = await Promise.all(Array.from({ length: 50 }, () => app.buckets.take('forward', `agent-${agent}`)))
      return decisions.filter((d) => d.allowed).length
    })
  )
  const elapsedS = (performance.now() - started) / 1000
  const most = capacity + Math.ceil(refill_rate * elapsedS) + 1
  t.ok(results.every((n) => n >= capacity && n <= most), `allowed per agent in [${capacity}, ${most}]: ${Math.min(...results)}..${Math.max(...results)}`)
  const metrics = await app.inject('/metrics')
  t.notMatch(metrics.body, /result="fail_/, 'every decision came from Redis')
})

t.test('an agent known to be empty is refused locally, with the same answers', async (t) => {
  const file = await policiesFile(t, [{ action: 'rest', bucket_name: 'slow', refill_rate: 2, capacity: 2, key_selector: 'jwt.claims.agent_id' }])
  const app = await buildTestApp(t, { BUCKETS_FILE: file, REDIS_TIMEOUT_MS: '2000' })
  const redis = await redisClient(t)
  const key = app.keys.bucket('agent-flood', 'rest')
  await app.buckets.take('rest', 'agent-flood')
  await app.buckets.take('rest', 'agent-flood')
  const first = await app.buckets.take('rest', 'agent-flood')
  t.notOk(first.allowed)
  const stamp = await redis.hget(key, 'ts')
  const redisCalls = async () => (await app.metrics.redisDuration.get()).values.find((v) => v.metricName?.endsWith('_count'))?.value
  const callsBefore = await redisCalls()

  const flood = await Promise.all(Array.from({ length: 200 }, () => app.buckets.take('rest', 'agent-flood')))
  t.ok(flood.every((d) => !d.allowed && d.retryAfterMs > 0 && d.retryAfterMs <= first.retryAfterMs), 'all refused, retry no later than first said')
  t.equal(await redis.hget(key, 'ts'), stamp, 'the bucket in Redis was not touched')
  t.equal(await redisCalls(), callsBefore, 'no Redis call for the flood')

  await sleep(first.retryAfterMs)
  t.ok((await app.buckets.take('rest', 'agent-flood')).allowed, 'allowed again when the token is due')
})

t.test('over HTTP: RateLimit headers on every answer, 429 with Retry-After, retry succeeds', async (t) => {
  const sim = await startTestOpenClaw(t)
  const file = await policiesFile(t, [{ action: 'rest', bucket_name: 'rest-http', refill_rate: 1, capacity: 3, key_selector: 'jwt.claims.agent_id' }])
  const app = await buildTestApp(t, { ...openclawEnv(sim), BUCKETS_FILE: file })
  const authorization = `Bearer ${await mint({ sub: '12345', agent_id: 'agent-http' })}`
  const post = () =>
    app.inject({
      method: 'POST',
      url: '/v1/rating',
      headers: { authorization },
      payload: { user_id: '12345', item_id: '98765', timestamp: 1721234567, rating: 4.7 }
    })

  for (let i = 0; i < 3; i++) {
    const res = await post()
    t.equal(res.statusCode, 200)
    t.equal(res.headers['ratelimit-policy'], '"rest";q=3;w=3')
    t.match(res.headers.ratelimit, new RegExp(`^"rest";r=${2 - i};t=\\d+$`))
  }
  const limited = await post()
  t.equal(limited.statusCode, 429)
  t.same(Object.keys(limited.json()).sort(), ['error', 'message', 'statusCode'])
  t.equal(limited.json().error, 'Too Many Requests')
  t.equal(limited.headers['retry-after'], '1', 'next token in at most 1 s, rounded up')
  t.equal(limited.headers['ratelimit-policy'], '"rest";q=3;w=3')
  t.match(limited.headers.ratelimit, /^"rest";r=0;t=[1-3]$/)
  t.equal(sim.received.length, 3, 'the refused call never reached OpenClaw')

  await sleep(Number(limited.headers['retry-after']) * 1000)
  t.equal((await post()).statusCode, 200, 'a retry at Retry-After succeeds')

  const other = await app.inject({
    method: 'POST',
    url: '/v1/rating',
    headers: { authorization: `Bearer ${await mint({ sub: '12345', agent_id: 'agent-other' })}` },
    payload: { user_id: '12345', item_id: '98765', timestamp: 1721234567, rating: 4.7 }
  })
  t.equal(other.statusCode, 200, 'another agent has its own bucket')
})

t.test('a bad BUCKETS_FILE stops the start with a ConfigError naming it', async (t) => {
  const file = await policiesFile(t, [{ action: 'rest', bucket_name: 'x', refill_rate: -1, capacity: 1, key_selector: 'ip' }])
  await t.rejects(buildTestApp(t, { BUCKETS_FILE: file }, { memory: true }), { name: 'ConfigError', message: /BUCKETS_FILE .* at \/0\/refill_rate/ })
  await t.rejects(buildTestApp(t, { BUCKETS_FILE: '/nonexistent/buckets.json' }, { memory: true }), { name: 'ConfigError', message: /BUCKETS_FILE/ })
})

t.test('POST /v1/sse-tickets is charged to the read bucket and says so', async (t) => {
  const file = await policiesFile(t, [{ action: 'read', bucket_name: 'reads', refill_rate: 0.01, capacity: 2, key_selector: 'jwt.claims.agent_id' }])
  const app = await buildTestApp(t, { BUCKETS_FILE: file })
  const authorization = `Bearer ${await mint({ sub: 'u-read', agent_id: 'agent-read' })}`
  const codes: number[] = []
  for (let i = 0; i < 3; i++) {
    const res = await app.inject({ method: 'POST', url: '/v1/sse-tickets', headers: { authorization } })
    codes.push(res.statusCode)
    t.equal(res.headers['ratelimit-policy'], '"read";q=2;w=200')
    if (res.statusCode === 429) t.equal(res.headers['retry-after'], '100', 'one token every 100 s')
  }
  t.equal(codes.filter((c) => c === 429).length, 1)
  t.equal(codes[2], 429)
})

t.test('the limit sits on the routes that declare it: a HEAD twin is charged once, like its GET', async (t) => {
  const file = await policiesFile(t, [{ action: 'read', bucket_name: 'reads', refill_rate: 0.01, capacity: 2, key_selector: 'jwt.claims.agent_id' }])
  const app = await buildTestApp(t, { BUCKETS_FILE: file })
  const authorization = `Bearer ${await mint({ sub: 'u-head', agent_id: 'agent-head' })}`
  const get = await app.inject({ method: 'GET', url: '/v1/scores?items=a', headers: { authorization } })
  t.equal(get.statusCode, 200)
  t.match(get.headers.ratelimit, /^"read";r=1;/)
  const head = await app.inject({ method: 'HEAD', url: '/v1/scores?items=a', headers: { authorization } })
  t.equal(head.statusCode, 200, 'one token for one HEAD request')
  t.match(head.headers.ratelimit, /^"read";r=0;/)
  t.equal((await app.inject({ method: 'GET', url: '/v1/scores?items=a', headers: { authorization } })).statusCode, 429)
  t.equal((await app.inject('/healthz')).headers.ratelimit, undefined, 'a route without a bucket is not charged')
})
