import t from 'tap'
import { buildTestApp, listen } from '../helpers/app.js'
import { bucketsFile, openStream, score } from '../helpers/sse.js'
import { bearer, mint } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

t.test('defect 9: memory mode forgets scores after SCORES_TTL and history after HISTORY_TTL', async (t) => {
  const BUCKETS_FILE = await bucketsFile(t, { capacity: 1000, refill_rate: 1000 })
  const app = await buildTestApp(t, { HISTORY_TTL: '1', SCORES_TTL: '1', BUCKETS_FILE }, { memory: true })
  const url = await listen(app)
  const headers = bearer(await mint({ sub: 'once', agent_id: 'ag-once' }))
  const first = await app.events.publish(score('once', 'a', 1), 'rest')
  await app.events.publish(score('once', 'b', 2), 'rest')
  const scores = async () => (await app.inject({ url: '/v1/scores?items=a,b', headers })).json().scores as unknown[]
  t.equal((await scores()).length, 2, 'both scores held at first')
  await waitFor('the scores to expire', async () => (await scores()).length === 0, 15_000)
  const resumed = await openStream(t, `${url}/events/personalized-rating`, { ...headers, 'last-event-id': first })
  t.equal(resumed.status, 200)
  await resumed.waitFor((m) => m.some((x) => x.id !== undefined))
  t.same(resumed.events(), [], 'the expired history replays nothing')
})
