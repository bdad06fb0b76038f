import t from 'tap'
import { buildTestApp } from '../helpers/app.js'
import { collect, feedRating } from '../helpers/forwarder.js'
import { metric } from '../helpers/metrics.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'
import { bearer, mint } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

// Retries within a second, so that a poison rating retried forever shows within the test.
const fast = { FORWARD_BACKOFF_BASE_MS: '50', FORWARD_BACKOFF_MAX_MS: '200' }

t.test('defect 2: poison ratings never block the queue: dead-lettered, and the good rating behind them is forwarded', async (t) => {
  // The audit's case: as many poison ratings as one replica holds (FORWARD_HELD_MAX=3).
  const sim = await startTestOpenClaw(t, { refuse: { status: 422, items: ['poison-item'] } })
  const app = await buildTestApp(t, { ...openclawEnv(sim), ...fast, FORWARD_HELD_MAX: '3' })
  const seen = await collect(t, app)
  const poison = [1, 2, 3].map((i) => feedRating(`poison-user-${i}`, 'poison-item', 1721000000 + i))
  await app.forwarder.enqueue(poison, Date.now())
  await waitFor('every poison rating reached OpenClaw', () => poison.every((r) => sim.count(r) >= 1))
  const good = feedRating('good-user', 'good-item', 1721000100)
  await app.forwarder.enqueue([good], Date.now())

  await waitFor('the good rating published', () => seen.some((e) => e.item_id === 'good-item'), 15_000)
  t.equal(sim.count(good), 1, 'the good rating forwarded once')
  for (const r of poison) t.equal(sim.count(r), 1, `${r.user_id}: refused for good after one call, never retried`)
  await waitFor('the queue moved on (every entry acknowledged)', async () => (await metric(app, 'moltbridge_forward_queue_depth')) === 0)

  const admin = bearer(await mint({ sub: 'ops', scope: 'moltbridge:admin' }))
  const list = (await app.inject({ url: '/admin/dead-letters', headers: admin })).json()
  t.equal(list.total, 3)
  t.same(list.dead_letters.map((d: { rating: { user_id: string } }) => d.rating.user_id).sort(), poison.map((r) => r.user_id))
  t.match(list.dead_letters[0], { reason: 'rejected', status: 422, attempts: 1, detail: 'OpenClaw answered 422' })
  t.equal(await metric(app, 'moltbridge_forward_dead_lettered_total', 'reason="rejected"'), 3, 'counted by reason')
  t.equal((await app.inject({ url: '/admin/queue', headers: admin })).json().dead_letters, 3)
})

t.test('a 2xx that is not the score event is dead-lettered as invalid_response (memory stores)', async (t) => {
  const sim = await startTestOpenClaw(t, { answer: 'not-a-score' })
  const app = await buildTestApp(t, { ...openclawEnv(sim), ...fast }, { memory: true })
  const rating = feedRating('odd-user', 'odd-item', 1721000200)
  await app.forwarder.enqueue([rating], Date.now())
  await waitFor('dead-lettered', async () => (await app.deadLetters.size()) === 1)
  const [letter] = await app.deadLetters.list(10)
  t.match(letter, { rating, reason: 'invalid_response', status: 200, attempts: 1 })
  t.equal(await metric(app, 'moltbridge_forward_dead_lettered_total', 'reason="invalid_response"'), 1)
  t.same(await app.forwarder.depths(), [{ partition: 0, depth: 0 }], 'acknowledged: the queue is empty')
})

t.test('dead letters: retry once puts the rating back in the queue, drop removes it, unknown ids are 404', async (t) => {
  const sim = await startTestOpenClaw(t, { refuse: { status: 400, items: ['fixable', 'hopeless'] } })
  const app = await buildTestApp(t, { ...openclawEnv(sim), ...fast })
  const seen = await collect(t, app)
  const admin = bearer(await mint({ sub: 'ops', scope: 'moltbridge:admin' }))
  const fixable = feedRating('dl-user', 'fixable', 1721000300)
  const hopeless = feedRating('dl-user', 'hopeless', 1721000301)
  await app.forwarder.enqueue([fixable, hopeless], Date.now())
  await waitFor('both dead-lettered', async () => (await app.deadLetters.size()) === 2)
  const letters = (await app.inject({ url: '/admin/dead-letters', headers: admin })).json().dead_letters as { id: string; rating: { item_id: string } }[]
  const idOf = (item: string) => letters.find((d) => d.rating.item_id === item)?.id ?? ''
  const limited = await app.inject({ url: '/admin/dead-letters?limit=1', headers: admin })
  t.same([limited.statusCode, limited.json().total, limited.json().dead_letters.length], [200, 2, 1], '?limit=1: the oldest one, the total beside it')
  const tooMany = await app.inject({ url: '/admin/dead-letters?limit=1001', headers: admin })
  t.same([tooMany.statusCode, tooMany.json().message], [400, 'querystring/limit must match pattern "^([1-9][0-9]{0,2}|1000)$"'], 'a limit over 1000 is a 400 naming the field')

  // OpenClaw accepts it now (the operator fixed what was wrong): one retry forwards it.
  await sim.set({ refuse: { status: 400, items: ['hopeless'] } })
  const retried = await app.inject({ method: 'POST', url: `/admin/dead-letters/${idOf('fixable')}/retry`, headers: admin })
  t.equal(retried.statusCode, 200)
  await waitFor('the retried rating published', () => seen.some((e) => e.item_id === 'fixable'))
  t.equal(sim.count(fixable), 2, 'called once more')

  // Retried while OpenClaw still refuses: dead-lettered again, not retried forever.
  const again = await app.inject({ method: 'POST', url: `/admin/dead-letters/${idOf('hopeless')}/retry`, headers: admin })
  t.equal(again.statusCode, 200)
  await waitFor('dead-lettered again', () => sim.count(hopeless) === 2)
  await waitFor('one dead letter left', async () => (await app.deadLetters.size()) === 1)
  const [left] = (await app.inject({ url: '/admin/dead-letters', headers: admin })).json().dead_letters as { id: string }[]
  t.not(left.id, idOf('hopeless'), 'under a new id')

  t.equal((await app.inject({ method: 'DELETE', url: `/admin/dead-letters/${left.id}`, headers: admin })).statusCode, 204)
  t.equal(await app.deadLetters.size(), 0, 'dropped')
  t.equal((await app.inject({ method: 'DELETE', url: `/admin/dead-letters/${left.id}`, headers: admin })).statusCode, 404, 'dropping twice: 404')
  t.equal((await app.inject({ method: 'POST', url: `/admin/dead-letters/${left.id}/retry`, headers: admin })).statusCode, 404)
  t.equal((await app.inject({ method: 'DELETE', url: '/admin/dead-letters/not-an-id', headers: admin })).statusCode, 400, 'a malformed id: 400')
  t.equal(await metric(app, 'moltbridge_forward_dead_lettered_total', 'reason="rejected"'), 3)
  t.equal(sim.count(hopeless), 2, 'the dropped rating was never tried again')
})

t.test('defect 3: an absurd upstream Retry-After is capped by FORWARD_RETRY_AFTER_MAX_MS, without a timer warning flood', async (t) => {
  const warnings: string[] = []
  const onWarning = (warning: Error) => warnings.push(warning.name)
  process.on('warning', onWarning)
  t.teardown(() => void process.off('warning', onWarning))
  // 99999999 s (more than 2^31 ms): once, then OpenClaw answers again.
  const sim = await startTestOpenClaw(t, { limited: { retryAfterS: 99_999_999, count: 1 } })
  const app = await buildTestApp(t, { ...openclawEnv(sim), FORWARD_RETRY_AFTER_MAX_MS: '500' })
  const seen = await collect(t, app)
  const rating = feedRating('patient-user', 'patient-item', 1721000400)
  await app.forwarder.enqueue([rating], Date.now())
  await waitFor('the rating forwarded after the capped pause', () => seen.length === 1, 15_000)
  t.equal(sim.count(rating), 2, 'refused once, forwarded on the next call')
  const [refused, accepted] = sim.received
  t.ok(accepted.at - refused.at >= 450, 'the capped pause was honoured')
  t.same(warnings.filter((name) => name === 'TimeoutOverflowWarning'), [], 'no timer overflow warning')

  // The REST caller is told the capped wait too.
  await sim.set({ limited: { retryAfterS: 99_999_999, count: 1 } })
  const res = await app.inject({
    method: 'POST',
    url: '/v1/rating',
    payload: { user_id: 'user-1', item_id: 'rest-item', timestamp: 1721000401, rating: 3 },
    headers: bearer(await mint())
  })
  t.equal(res.statusCode, 429)
  t.equal(res.headers['retry-after'], '1', 'Retry-After: the capped 500 ms, in whole seconds')
})
