import t from 'tap'
import { buildTestApp, listen } from '../helpers/app.js'
import { metric } from '../helpers/metrics.js'
import { openStream } from '../helpers/sse.js'
import { bearer, mint } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

/** A CPU hog: keeps this process (the gateway's too) busy for `ms`. */
function hog(ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    /* busy */
  }
}

const turn = () => new Promise((resolve) => setImmediate(resolve))

t.test('event loop lagging past the threshold: new requests and new streams get 503 + Retry-After, an open stream keeps receiving', async (t) => {
  const app = await buildTestApp(t, { UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '200' }, { memory: true })
  const url = await listen(app)
  const token = await mint({ sub: 'busy-user' })
  const stream = await openStream(t, `${url}/events/personalized-rating`, bearer(token))
  t.equal(stream.status, 200)

  // The delay is sampled every second: block across one whole sample, then ask at once.
  let shed = null
  for (let attempt = 0; attempt < 5 && !shed; attempt++) {
    hog(1200)
    await turn()
    hog(1200)
    await turn()
    const scores = await app.inject({ url: '/v1/scores?items=a', headers: bearer(token) })
    if (scores.statusCode !== 503) continue
    const newStream = await openStream(t, `${url}/events/personalized-rating`, bearer(token))
    if (newStream.status === 503) shed = { scores, newStream }
    else newStream.close() // the pressure was over already: try again
  }
  if (!shed) throw new Error('never under pressure')
  t.equal(shed.scores.headers['retry-after'], '5', 'told when to come back')
  t.match(shed.scores.json(), { statusCode: 503, message: /overloaded/ })
  t.equal(shed.newStream.status, 503, 'a new stream is refused too')
  t.equal(shed.newStream.headers['retry-after'], '5')
  t.ok((await metric(app, 'moltbridge_load_shed_total', 'reason="eventLoopDelay"')) >= 2, 'counted')

  await app.events.publish({ user_id: 'busy-user', item_id: 'while-busy', rating: 4, timestamp: 1 }, 'rest')
  await stream.waitFor((messages) => messages.some((m) => m.data?.includes('while-busy')))
  t.pass('the open stream was not touched and kept receiving')
  await waitFor('requests served again once the loop is free', async () => (await app.inject({ url: '/v1/scores?items=a', headers: bearer(token) })).statusCode === 200)
})

t.test('heap over the threshold: requests shed, but liveness, metrics (with the thresholds) and the admin API still answer', async (t) => {
  const app = await buildTestApp(t, { UNDER_PRESSURE_MAX_HEAP_USED_BYTES: '1', UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0' }, { memory: true })
  const token = await mint()
  await waitFor('shedding', async () => (await app.inject({ url: '/v1/scores?items=a', headers: bearer(token) })).statusCode === 503)
  t.equal((await app.inject('/healthz')).statusCode, 200, 'liveness: a busy process is not a dead one')
  const admin = await app.inject({ url: '/admin/streams', headers: bearer(await mint({ scope: 'moltbridge:admin' })) })
  t.equal(admin.statusCode, 200, 'operators can still act')
  t.equal(await metric(app, 'moltbridge_bound', 'bound="max_heap_used_bytes"'), 1, 'the thresholds are in /metrics')
  t.equal(await metric(app, 'moltbridge_bound', 'bound="max_event_loop_delay_ms"'), 0)
  t.ok((await metric(app, 'moltbridge_load_shed_total', 'reason="heapUsedBytes"')) >= 1)
  t.equal((await app.inject({ url: '/nowhere' })).statusCode, 503, 'unknown routes are shed too')
})
