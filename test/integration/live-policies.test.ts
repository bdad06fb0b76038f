import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { buildTestApp, deletePrefix, listen, uniquePrefix } from '../helpers/app.js'
import { metric } from '../helpers/metrics.js'
import { policiesFile } from '../helpers/policies.js'
import { openStream } from '../helpers/sse.js'
import { bearer, mint } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

/** A read policy whose bucket does not refill within a test: a burst shows the capacity exactly. */
const read = (capacity: number, extra: object = {}) => ({
  action: 'read',
  bucket_name: 'reads',
  refill_rate: 0.001,
  capacity,
  key_selector: 'jwt.claims.agent_id',
  ...extra
})


/** `count` reads at once by one agent; the statuses and the last RateLimit-Policy. */
async function burst(app: FastifyInstance, agent: string, count: number) {
  const headers = bearer(await mint({ sub: `${agent}-user`, agent_id: agent }))
  const answers = await Promise.all(Array.from({ length: count }, () => app.inject({ url: '/v1/scores?items=a', headers })))
  return {
    admitted: answers.filter((a) => a.statusCode === 200).length,
    answers,
    policy: answers.at(-1)?.headers['ratelimit-policy']
  }
}

const ADMIN = { scope: 'moltbridge:admin' }

t.test('shadow mode: every request admitted, the would-be refusals counted and sent as headers', async (t) => {
  const app = await buildTestApp(t, { BUCKETS_FILE: await policiesFile(t, [read(3, { mode: 'shadow' })]) })
  const { admitted, answers } = await burst(app, 'shadow-agent', 6)
  t.equal(admitted, 6, 'all admitted')
  for (const answer of answers) {
    t.equal(answer.headers['ratelimit-policy'], '"read";q=3;w=3000', 'the policy in the headers')
    t.match(answer.headers.ratelimit, /^"read";r=\d+;t=\d+$/)
  }
  t.equal(answers.filter((a) => /r=0;/.test(String(a.headers.ratelimit))).length >= 3, true, 'the refusals say no token is left')
  t.equal(await metric(app, 'moltbridge_bucket_decisions_total', 'action="read",result="shadow_limited"'), 3, 'counted as would-be-limited')
  t.equal(await metric(app, 'moltbridge_bucket_decisions_total', 'action="read",result="allowed"'), 3)
  t.equal(await metric(app, 'moltbridge_bucket_decisions_total', 'action="read",result="limited"'), 0, 'nothing refused')
})

t.test('per-agent override: applied by every replica at its next decision, removed again', async (t) => {
  const prefix = uniquePrefix()
  t.teardown(() => deletePrefix(prefix))
  const env = { KEY_PREFIX: prefix, BUCKETS_FILE: await policiesFile(t, [read(40)]) }
  const [one, two] = [await buildTestApp(t, env), await buildTestApp(t, env)]
  const admin = bearer(await mint({ sub: 'ops', ...ADMIN }))
  const set = await one.inject({ method: 'PUT', url: '/admin/limits/small-agent', payload: { read: { refill_rate: 0.001, capacity: 5 } }, headers: admin })
  t.equal(set.statusCode, 200)
  t.same(set.json(), { agent_id: 'small-agent', limits: { read: { refill_rate: 0.001, capacity: 5 } } })

  const small = await burst(two, 'small-agent', 10)
  t.equal(small.admitted, 5, 'the other replica admits the overridden agent its own capacity')
  t.equal(small.policy, '"read";q=5;w=5000', 'and says so in RateLimit-Policy')
  t.equal((await burst(two, 'other-agent', 50)).admitted, 40, 'other agents keep the policy')
  t.same((await two.inject({ url: '/admin/limits', headers: admin })).json(), {
    overrides: [{ agent_id: 'small-agent', limits: { read: { refill_rate: 0.001, capacity: 5 } } }]
  })

  t.equal((await two.inject({ method: 'DELETE', url: '/admin/limits/small-agent', headers: admin })).statusCode, 204)
  t.equal((await burst(one, 'small-agent', 1)).policy, '"read";q=40;w=40000', 'the policy applies again')
  t.same((await one.inject({ url: '/admin/limits', headers: admin })).json(), { overrides: [] })
  t.equal((await one.inject({ method: 'DELETE', url: '/admin/limits/small-agent', headers: admin })).statusCode, 404)
})

t.test('per-agent override without Redis, and for SSE delivery', async (t) => {
  const delivery = { action: 'delivery', bucket_name: 'delivery', refill_rate: 0.001, capacity: 1, key_selector: 'jwt.claims.agent_id' }
  const app = await buildTestApp(t, { BUCKETS_FILE: await policiesFile(t, [read(40), delivery]) }, { memory: true })
  const url = await listen(app)
  const admin = bearer(await mint({ sub: 'ops', ...ADMIN }))
  await app.inject({
    method: 'PUT',
    url: '/admin/limits/mem-agent',
    payload: { read: { refill_rate: 0.001, capacity: 2 }, delivery: { refill_rate: 1000, capacity: 1000 } },
    headers: admin
  })
  t.equal((await burst(app, 'mem-agent', 5)).admitted, 2, 'memory buckets follow the override')

  const stream = await openStream(t, `${url}/events/personalized-rating`, bearer(await mint({ sub: 'mem-agent-user', agent_id: 'mem-agent' })))
  for (let i = 0; i < 3; i++) await app.events.publish({ user_id: 'mem-agent-user', item_id: `item-${i}`, rating: 1, timestamp: i }, 'rest')
  await stream.waitFor((messages) => messages.filter((m) => m.data !== undefined).length === 3)
  t.pass('the delivery override lets 3 events through where the policy allows 1')
})

t.test('a replica that missed the broadcast converges by its periodic reload', async (t) => {
  const app = await buildTestApp(t, { BUCKETS_FILE: await policiesFile(t, [read(40)]) })
  const url = await listen(app)
  const redis = app.redis
  if (!redis) throw new Error('Redis expected')
  // Written straight into Redis, as another replica would, with no broadcast.
  await redis.hset(app.keys.overrides, 'quiet-agent', JSON.stringify({ read: { refill_rate: 0.001, capacity: 3 } }))
  await redis.hset(app.keys.limits('quiet-agent'), 'read:capacity', 3, 'read:refill_rate', 0.001)
  t.equal((await burst(app, 'quiet-agent', 6)).admitted, 3, 'the Redis bucket applies it at once')
  await waitFor('the override known here too', () => app.buckets.effective('read', 'quiet-agent').capacity === 3)

  const old = await mint({ sub: 'quiet-user', agent_id: 'quiet-agent2' }, { issuedAt: Math.floor(Date.now() / 1000) - 5 })
  const stream = await openStream(t, `${url}/events/personalized-rating`, bearer(old))
  t.equal(stream.status, 200)
  await redis.zadd(app.keys.revocations, Date.now(), 'user:quiet-user')
  await stream.ended
  t.ok(stream.messages.some((m) => m.event === 'revoked'), 'a revocation heard only by reload ends the stream too')
  t.equal((await app.inject({ url: '/v1/scores?items=a', headers: bearer(old) })).statusCode, 401)
})
