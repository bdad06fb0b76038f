import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { collect } from '../helpers/forwarder.js'
import { UpstreamError } from '../../src/upstream/errors.js'
import { personalize } from '../../src/simulators/openclaw.js'
import { buildTestApp } from '../helpers/app.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'
import { bearer, mint } from '../helpers/tokens.js'

const rating = { user_id: 'u-up', item_id: 'i-up', timestamp: 1721234567, rating: 2.5 }

async function post(app: FastifyInstance) {
  return app.inject({ method: 'POST', url: '/v1/rating', headers: bearer(await mint({ sub: 'u-up', agent_id: 'a-up' })), payload: rating })
}

t.test('OpenClaw failures become 502 / 504 / 429 with the error JSON', async (t) => {
  const sim = await startTestOpenClaw(t)
  const app = await buildTestApp(t, openclawEnv(sim, 1500))
  const published = await collect(t, app)

  await sim.set({ errorRate: 1 })
  const failed = await post(app)
  t.equal(failed.statusCode, 502, 'OpenClaw 500: 502')
  t.match(failed.json(), { statusCode: 502, error: 'Bad Gateway', message: /OpenClaw/ })
  await sim.set({ errorRate: 0 })

  await sim.set({ answer: 'not-a-score' })
  t.equal((await post(app)).statusCode, 502, 'a 200 that is not a score event: 502')
  await sim.set({ answer: 'other-rating' })
  t.equal((await post(app)).statusCode, 502, 'a score event for another user: 502, never published')
  await sim.set({ answer: 'score' })

  await sim.set({ latencyMs: 6000 })
  const slow = await post(app)
  t.equal(slow.statusCode, 504, 'slower than OPENCLAW_TIMEOUT_MS: 504')
  t.match(slow.json(), { statusCode: 504, error: 'Gateway Timeout' })
  await sim.set({ latencyMs: 0 })

  await sim.set({ stall: true })
  t.equal((await post(app)).statusCode, 504, 'never answers: 504')
  await sim.set({ stall: false })

  await sim.set({ limited: { retryAfterS: 7, count: 1 } })
  const limited = await post(app)
  t.equal(limited.statusCode, 429, 'OpenClaw 429: 429')
  t.equal(limited.headers['retry-after'], '7', "OpenClaw's Retry-After is passed on")
  t.match(limited.json(), { statusCode: 429, error: 'Too Many Requests' })
  t.equal((await post(app)).statusCode, 200, 'the 429 lasted one request')

  await sim.set({ down: true })
  const down = await post(app)
  t.equal(down.statusCode, 502, 'connection refused: 502')
  await sim.set({ down: false })
  const back = await post(app)
  t.equal(back.statusCode, 200, 'recovers once OpenClaw is back')
  t.same(back.json(), personalize(rating))
  for (let i = 0; i < 500 && published.length < 2; i++) await new Promise((r) => setTimeout(r, 20))
  t.same(published, [personalize(rating), personalize(rating)], 'only the two answered scores were published')

  const metrics = (await app.inject('/metrics')).body
  for (const outcome of ['2xx', '5xx', 'invalid', 'timeout', '429', 'network']) {
    t.match(metrics, `moltbridge_forward_attempts_total{source="rest",outcome="${outcome}"}`, `counted: ${outcome}`)
  }
  t.notMatch(metrics, sim.apiKey, 'the key is not in /metrics')
})

t.test('a wrong OpenClaw key is a 502 and the key is not in the answer', async (t) => {
  const sim = await startTestOpenClaw(t)
  const app = await buildTestApp(t, { ...openclawEnv(sim), OPENCLAW_API_KEY: 'not-the-key-4f1d' })
  const res = await post(app)
  t.equal(res.statusCode, 502)
  t.notMatch(res.body, 'not-the-key-4f1d')
})

t.test('the client reports each failure kind and the Retry-After of a 429', async (t) => {
  const sim = await startTestOpenClaw(t)
  const app = await buildTestApp(t, openclawEnv(sim, 1500))
  const failure = async () => {
    const err = await app.openclaw.rate(rating, 'feed').then(
      () => null,
      (e: unknown) => e
    )
    if (!(err instanceof UpstreamError)) throw new Error(`expected an UpstreamError, got ${String(err)}`)
    return err
  }
  await sim.set({ limited: { retryAfterS: 3 } })
  t.match(await failure(), { kind: 'limited', status: 429, retryAfterMs: 3000 })
  await sim.set({ limited: null, errorRate: 1 })
  t.match(await failure(), { kind: 'status', status: 500 })
  await sim.set({ errorRate: 0, down: true })
  t.match(await failure(), { kind: 'network' })
  await sim.set({ down: false })
  t.same(await app.openclaw.rate(rating, 'feed'), personalize(rating))
  t.equal(sim.count(rating), 3, 'each attempt that found OpenClaw up reached it once')
})

t.test('the simulator can be inspected and steered over HTTP (separate-process use)', async (t) => {
  const sim = await startTestOpenClaw(t)
  const mode = await fetch(`${sim.url}/_sim/mode`, { method: 'POST', body: JSON.stringify({ limited: { retryAfterS: 2 } }) })
  t.match(await mode.json(), { limited: { retryAfterS: 2 } })
  const limited = await fetch(`${sim.url}/v1/rating`, {
    method: 'POST',
    headers: { authorization: `Bearer ${sim.apiKey}` },
    body: JSON.stringify(rating)
  })
  t.equal(limited.status, 429)
  t.equal(limited.headers.get('retry-after'), '2')
  const seen = await (await fetch(`${sim.url}/_sim/received`)).json()
  t.match(seen, { received: [{ body: rating }] })
})
