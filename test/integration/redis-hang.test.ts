import t from 'tap'
import { buildTestApp, listen, logCapture } from '../helpers/app.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'
import { startRedisServer } from '../helpers/redis-server.js'
import { openStream, score } from '../helpers/sse.js'
import { bearer, mint } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const STREAM = '/events/personalized-rating'
/** Far above every budget (1 s): an answer later than this is a hang. */
const HANG_MS = 15_000

t.test('defect 8: a hung Redis never hangs a request: 503 with Retry-After: 1, /readyz within its budget', async (t) => {
  const server = await startRedisServer()
  t.teardown(() => server.stop())
  const sim = await startTestOpenClaw(t)
  const logs = logCapture()
  const app = await buildTestApp(t, { REDIS_URL: server.url, ...openclawEnv(sim) }, { logStream: logs.stream })
  const base = await listen(app)
  const token = await mint({ sub: 'hang-user', agent_id: 'hang-agent' })
  const headers = bearer(token)
  const ticket = (await app.inject({ method: 'POST', url: '/v1/sse-tickets', headers })).json<{ ticket: string }>().ticket
  const lastId = await app.events.publish(score('hang-user', 'i1', 3), 'rest')
  await waitFor('ready before the hang', async () => (await app.inject('/readyz')).statusCode === 200)

  server.pause()
  t.teardown(() => server.resume())
  const hung = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('hung')), HANG_MS).unref())
  const within = <T>(answer: Promise<T>) => Promise.race([answer, hung])
  const rating = { user_id: 'hang-user', item_id: 'i2', timestamp: 1721234567, rating: 4 }
  const [scores, rated, issued, byTicket, resumed, live, ready] = await Promise.all([
    within(app.inject({ url: '/v1/scores?items=i1', headers })),
    within(app.inject({ method: 'POST', url: '/v1/rating', headers, payload: rating })),
    within(app.inject({ method: 'POST', url: '/v1/sse-tickets', headers })),
    within(openStream(t, `${base}${STREAM}?ticket=${ticket}`)),
    within(openStream(t, `${base}${STREAM}`, { ...headers, 'last-event-id': lastId })),
    within(openStream(t, `${base}${STREAM}`, headers)),
    within(app.inject('/readyz'))
  ])
  for (const [name, res] of Object.entries({ scores, issued })) {
    t.equal(res.statusCode, 503, `${name}: 503`)
    t.equal(res.headers['retry-after'], '1', `${name}: Retry-After: 1`)
  }
  // A fresh stream needs Redis too: it subscribes to its user's channel and reads its position there.
  for (const [name, stream] of Object.entries({ 'stream by ticket': byTicket, 'stream resuming from an id': resumed, 'fresh stream': live })) {
    t.equal(stream.status, 503, `${name}: 503`)
    t.equal(stream.headers['retry-after'], '1', `${name}: Retry-After: 1`)
  }
  t.equal(rated.statusCode, 200, 'the score OpenClaw computed is answered: a retry would rate twice upstream')
  t.same(rated.json(), { ...rating, rating: rated.json().rating })
  t.ok(logs.lines.some((line) => line.includes('publishing a REST score event failed')), 'the missed publish is logged')
  t.equal(ready.statusCode, 503, '/readyz answers within its budget')
  t.match(ready.json().reason, /no answer within \d+ ms/)

  server.resume()
  await waitFor('scores again', async () => (await app.inject({ url: '/v1/scores?items=i1', headers })).statusCode === 200)
  const again = await openStream(t, `${base}${STREAM}?ticket=${ticket}`)
  t.equal(again.status, 200, 'the 503 did not burn the ticket')
})
