import t from 'tap'
import { collect } from '../helpers/forwarder.js'
import type { FastifyInstance } from 'fastify'
import { personalize } from '../../src/simulators/openclaw.js'
import { buildTestApp } from '../helpers/app.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'
import { mint } from '../helpers/tokens.js'

/** The Authorization header of a caller (sub = user, agent_id = agent). */
const bearerOf = async (sub: string, agentId = sub) => `Bearer ${await mint({ sub, agent_id: agentId })}`

const rating = { user_id: '12345', item_id: '98765', timestamp: 1721234567, rating: 4.7 }

/** The seed rating, posted by its own user. */
const postRating = async (app: FastifyInstance) =>
  app.inject({ method: 'POST', url: '/v1/rating', headers: { authorization: await bearerOf('12345') }, payload: rating })

t.test('a valid rating is forwarded as is and OpenClaw score event is the answer', async (t) => {
  const sim = await startTestOpenClaw(t)
  const app = await buildTestApp(t, openclawEnv(sim))
  const published = await collect(t, app)
  const res = await postRating(app)
  t.equal(res.statusCode, 200)
  t.same(res.json(), personalize(rating))
  t.equal(sim.received.length, 1)
  t.equal(sim.received[0].authorization, `Bearer ${sim.apiKey}`)
  t.strictSame(sim.received[0].body, rating, 'exactly the four v1 fields reach OpenClaw')
  for (let i = 0; i < 500 && published.length === 0; i++) await new Promise((r) => setTimeout(r, 20))
  t.same(published, [personalize(rating)], 'the score event is published to SSE subscribers once')
})

t.test('bad bodies are 400 naming the field (413 when too big) and never reach OpenClaw', async (t) => {
  const sim = await startTestOpenClaw(t)
  const app = await buildTestApp(t, openclawEnv(sim))
  const authorization = await bearerOf('12345')
  const post = (payload: string) =>
    app.inject({ method: 'POST', url: '/v1/rating', headers: { authorization, 'content-type': 'application/json' }, payload })

  const cases: Array<[string, string, RegExp]> = [
    ['malformed JSON', '{"user_id": "1",', /JSON/i],
    ['extra property', JSON.stringify({ ...rating, agent_id: 'x' }), /agent_id/],
    ['rating above 5', JSON.stringify({ ...rating, rating: 7 }), /rating/],
    ['empty item_id', JSON.stringify({ ...rating, item_id: '' }), /item_id/],
    ['string timestamp', JSON.stringify({ ...rating, timestamp: '1721234567' }), /timestamp/],
    ['missing user_id', JSON.stringify({ item_id: 'a', timestamp: 1, rating: 1 }), /user_id/],
    ['user_id too long', JSON.stringify({ ...rating, user_id: 'u'.repeat(129) }), /user_id/],
    ['not an object', '[]', /body/]
  ]
  for (const [name, payload, field] of cases) {
    const res = await post(payload)
    t.equal(res.statusCode, 400, `${name}: 400`)
    const body = res.json()
    t.equal(body.statusCode, 400, `${name}: the error JSON`)
    t.equal(body.error, 'Bad Request')
    t.match(body.message, field, `${name}: names the field (${body.message})`)
  }

  const big = await post(JSON.stringify({ ...rating, user_id: 'x'.repeat(2 * 1024 * 1024) }))
  t.equal(big.statusCode, 413, '2 MB body: 413')
  t.same(big.json(), { statusCode: 413, error: 'Payload Too Large', message: big.json().message })
  t.equal(sim.received.length, 0, 'no bad body reached OpenClaw')
})

t.test('without OPENCLAW_URL the route answers 503, not 500', async (t) => {
  const app = await buildTestApp(t)
  const res = await postRating(app)
  t.equal(res.statusCode, 503)
  t.match(res.json(), { statusCode: 503, message: /not configured/ })
})

t.test('seed rate-limit test: 100 agents x 50 concurrent requests, 40 + 20/s each', async (t) => {
  const sim = await startTestOpenClaw(t)
  // A generous upstream deadline: 4000 forwards share a loaded 2-core machine, and this test is about the buckets.
  const app = await buildTestApp(t, openclawEnv(sim, 60000))
  const agents = Array.from({ length: 100 }, (_, i) => `burst-agent-${i}`)
  const headers = await Promise.all(agents.map((agent) => bearerOf(`burst-user-${agent}`, agent)))

  const bursts = await Promise.all(
    agents.map(async (agent, i) => {
      const started = performance.now()
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, n) =>
          app.inject({
            method: 'POST',
            url: '/v1/rating',
            headers: { authorization: headers[i] },
            payload: { user_id: `burst-user-${agent}`, item_id: `item-${n}`, timestamp: 1721234567, rating: 3 }
          })
        )
      )
      return { agent, answers, elapsedS: (performance.now() - started) / 1000 }
    })
  )

  let totalAllowed = 0
  for (const { agent, answers, elapsedS } of bursts) {
    const allowed = answers.filter((a) => a.statusCode === 200).length
    const limited = answers.filter((a) => a.statusCode === 429)
    totalAllowed += allowed
    const bound = 40 + Math.floor(20 * elapsedS) + 1
    if (allowed < 40 || allowed > bound || allowed + limited.length !== 50) {
      const statuses = answers.map((a) => a.statusCode).join(',')
      t.fail(`${agent}: ${allowed} allowed in ${elapsedS.toFixed(2)} s (40..${bound}); statuses ${statuses}`)
    }
    for (const a of answers) {
      if (!a.headers['ratelimit-policy'] || !a.headers['ratelimit']) {
        t.fail(`${agent}: ${a.statusCode} without RateLimit headers`)
        break
      }
    }
    for (const a of limited) {
      if (!(Number(a.headers['retry-after']) >= 1)) {
        t.fail(`${agent}: 429 without Retry-After >= 1 (${a.headers['retry-after']})`)
        break
      }
    }
  }
  t.pass(`${totalAllowed} of 5000 allowed`)
  t.equal(sim.received.length, totalAllowed, 'nothing throttled reached OpenClaw')
})

t.test('defect 17: timestamp is an integer from 0 to 4102444800 and rating a finite number from 0 to 5', async (t) => {
  const sim = await startTestOpenClaw(t)
  const app = await buildTestApp(t, openclawEnv(sim))
  const authorization = await bearerOf('12345')
  const post = (payload: string) =>
    app.inject({ method: 'POST', url: '/v1/rating', headers: { authorization, 'content-type': 'application/json' }, payload })
  const body = (fields: string) => `{"user_id":"12345","item_id":"98765",${fields}}`
  const refused: Array<[string, string, RegExp]> = [
    ['timestamp 1e300', body('"timestamp":1e300,"rating":4'), /timestamp/],
    ['timestamp after 2100', body('"timestamp":4102444801,"rating":4'), /timestamp/],
    ['negative timestamp', body('"timestamp":-1,"rating":4'), /timestamp/],
    ['rating 1e400 (Infinity once parsed)', body('"timestamp":1721234567,"rating":1e400'), /rating/],
    ['rating -1e400', body('"timestamp":1721234567,"rating":-1e400'), /rating/]
  ]
  for (const [name, payload, field] of refused) {
    const res = await post(payload)
    t.equal(res.statusCode, 400, `${name}: 400`)
    t.match(res.json().message, field, `${name}: names the field (${res.json().message})`)
  }
  t.equal(sim.received.length, 0, 'nothing out of bounds reached OpenClaw')
  for (const timestamp of [0, 4102444800]) {
    const res = await post(body(`"timestamp":${timestamp},"rating":5`))
    t.equal(res.statusCode, 200, `timestamp ${timestamp} is inside the bounds`)
  }
})

t.test('defect 1: a caller cannot rate for another user', async (t) => {
  const sim = await startTestOpenClaw(t)
  const app = await buildTestApp(t, openclawEnv(sim))
  const published = await collect(t, app)
  const forAlice = { ...rating, user_id: 'alice' }
  const post = async (claims: Record<string, string>) =>
    app.inject({ method: 'POST', url: '/v1/rating', headers: { authorization: `Bearer ${await mint(claims)}` }, payload: forAlice })

  const bob = await post({ sub: 'bob', agent_id: 'agent-bob' })
  t.equal(bob.statusCode, 403, 'bob may not rate as alice')
  t.match(bob.json(), { statusCode: 403, error: 'Forbidden', message: /user_id.*ratings:write/ })
  t.notOk(bob.headers.ratelimit, 'refused before the bucket: no token spent')
  const readOnly = await post({ sub: 'bob', agent_id: 'agent-bob', scope: 'ratings:all' })
  t.equal(readOnly.statusCode, 403, 'reading everyone is not writing for everyone')
  t.equal(sim.received.length, 0, 'nothing reached OpenClaw')
  const scores = await app.inject({ url: '/v1/scores?items=98765', headers: { authorization: await bearerOf('alice') } })
  t.same(scores.json(), { scores: [] }, "alice's scores show nothing of it")
  t.same(published, [], 'nothing was published to SSE')

  t.equal((await post({ sub: 'alice', agent_id: 'agent-alice' })).statusCode, 200, 'alice rates for herself')
  const service = await post({ sub: 'importer', agent_id: 'agent-import', scope: 'ratings:all ratings:write' })
  t.equal(service.statusCode, 200, 'a backend service with ratings:write rates for anyone')
  t.equal(sim.received.length, 2)
})
