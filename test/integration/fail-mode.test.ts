import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { buildTestApp, logCapture, type Teardown } from '../helpers/app.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'
import { freePort } from '../helpers/ports.js'
import { startRedisServer } from '../helpers/redis-server.js'
import { mint } from '../helpers/tokens.js'

/** 4 tokens that barely refill, for every action: counts are exact. */
async function slowBuckets(t: Teardown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mb-fail-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'buckets.json')
  const policy = { bucket_name: 'slow', refill_rate: 0.01, capacity: 4, key_selector: 'jwt.claims.agent_id' }
  await writeFile(file, JSON.stringify(['rest', 'read', 'forward', 'delivery'].map((action) => ({ action, ...policy }))))
  return file
}

/** `n` decisions one after another, each timed: a dead Redis must cost a bounded wait. */
async function takes(t: Teardown & { ok(v: unknown, m: string): void }, app: FastifyInstance, agent: string, n: number) {
  let allowed = 0
  let slowest = 0
  for (let i = 0; i < n; i++) {
    const started = performance.now()
    if ((await app.buckets.take('forward', agent)).allowed) allowed++
    slowest = Math.max(slowest, performance.now() - started)
  }
  t.ok(slowest < 1000, `every decision answered within the budget (slowest ${Math.round(slowest)} ms)`)
  return allowed
}

async function decisions(app: FastifyInstance, result: string): Promise<number> {
  const { values } = await app.metrics.bucketDecisions.get()
  return values.filter((v) => v.labels.result === result).reduce((sum, v) => sum + v.value, 0)
}

t.test('Redis unreachable from the start', async (t) => {
  const url = `redis://127.0.0.1:${await freePort()}`
  const file = await slowBuckets(t)
  const build = (mode: string) => buildTestApp(t, { REDIS_URL: url, RATE_LIMIT_FAIL_MODE: mode, BUCKETS_FILE: file })

  t.test('local: keeps limiting with an in-process bucket', async (t) => {
    const app = await build('local')
    t.equal(await takes(t, app, 'agent-l', 7), 4)
    t.equal(await decisions(app, 'fail_local'), 7)
    const metrics = (await app.inject('/metrics')).body
    t.match(metrics, /moltbridge_redis_errors_total\{op="bucket"\} 7/)
  })

  t.test('open: admits everything and counts it', async (t) => {
    const app = await build('open')
    t.equal(await takes(t, app, 'agent-o', 7), 7)
    t.equal(await decisions(app, 'fail_open'), 7)
  })

  t.test('closed: refuses, and a route answers 503', async (t) => {
    const sim = await startTestOpenClaw(t)
    const app = await buildTestApp(t, { REDIS_URL: url, RATE_LIMIT_FAIL_MODE: 'closed', BUCKETS_FILE: file, ...openclawEnv(sim) })
    const decision = await app.buckets.take('forward', 'agent-c')
    t.notOk(decision.allowed)
    t.ok(decision.retryAfterMs > 0, 'a forward caller is told when to try again')
    const res = await app.inject({
      method: 'POST',
      url: '/v1/rating',
      headers: { authorization: `Bearer ${await mint({ sub: '12345', agent_id: 'agent-c' })}` },
      payload: { user_id: '12345', item_id: '98765', timestamp: 1721234567, rating: 4.7 }
    })
    t.equal(res.statusCode, 503)
    t.same(res.json(), { statusCode: 503, error: 'Service Unavailable', message: 'rate limiter unavailable, retry shortly' })
    t.equal(res.headers['retry-after'], '1')
    t.equal(sim.received.length, 0, 'nothing forwarded without a decision')
    t.equal(await decisions(app, 'fail_closed'), 2)
  })
})

t.test('a real Redis that goes away and comes back: local fallback, then shared again', async (t) => {
  const server = await startRedisServer()
  t.teardown(() => server.stop())
  const file = await slowBuckets(t)
  const logs = [logCapture(), logCapture()]
  const env = { REDIS_URL: server.url, BUCKETS_FILE: file, KEY_PREFIX: 'mbt-fail', REDIS_TIMEOUT_MS: '200' }
  const a = await buildTestApp(t, env, { logStream: logs[0].stream })
  const b = await buildTestApp(t, env, { logStream: logs[1].stream })

  t.equal((await takes(t, a, 'agent-1', 3)) + (await takes(t, b, 'agent-1', 3)), 4, 'one shared bucket while Redis is up')

  await server.stop()
  t.equal(await takes(t, a, 'agent-2', 6), 4, 'replica a limits on its own')
  t.equal(await takes(t, b, 'agent-2', 6), 4, 'replica b limits on its own: over-admission bounded by replicas')
  t.ok((await decisions(a, 'fail_local')) >= 6)

  await server.restart()
  const shared = async () => {
    for (const app of [a, b]) {
      while (app.redis?.status !== 'ready') await sleep(50)
    }
  }
  await shared()
  const both = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).buckets.take('forward', 'agent-3')))
  t.equal(both.filter((d) => d.allowed).length, 4, 'shared limits apply again, with no restart')

  for (const { lines } of logs) {
    t.equal(lines.filter((l) => l.includes('bucket store unavailable')).length, 1, 'the outage is logged once')
    t.equal(lines.filter((l) => l.includes('bucket store available again')).length, 1, 'and the recovery once')
  }
})

t.test('a Redis that stops answering costs REDIS_TIMEOUT_MS, then the fail mode', async (t) => {
  const server = await startRedisServer()
  t.teardown(() => server.stop())
  const app = await buildTestApp(t, { REDIS_URL: server.url, BUCKETS_FILE: await slowBuckets(t), REDIS_TIMEOUT_MS: '100' })
  t.equal(await takes(t, app, 'agent-p', 2), 2)
  server.pause()
  t.teardown(() => server.resume())
  t.equal(await takes(t, app, 'agent-p', 6), 4, 'a local bucket answers while Redis hangs')
  t.equal(await decisions(app, 'fail_local'), 6)
  server.resume()
})
