import t from 'tap'
import { buildTestApp } from '../helpers/app.js'
import { startRedisServer } from '../helpers/redis-server.js'
import { score } from '../helpers/sse.js'
import { waitFor } from '../helpers/wait.js'
import { bearer, mint } from '../helpers/tokens.js'

t.test('GET /v1/scores: the caller’s latest score per item, ETag, 304, Cache-Control private', async (t) => {
  const app = await buildTestApp(t)
  const headers = bearer(await mint({ sub: 'olga', agent_id: 'ag-o' }))
  await app.events.publish(score('olga', 'a', 1, 1), 'rest')
  await app.events.publish(score('olga', 'a', 4.2, 2), 'feed')
  await app.events.publish(score('olga', 'b', 3, 3), 'rest')
  await app.events.publish(score('other', 'c', 5, 4), 'rest')

  const res = await app.inject({ url: '/v1/scores?items=a,b,c,zz', headers })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { scores: [score('olga', 'a', 4.2, 2), score('olga', 'b', 3, 3)] }, 'newest per item, own user only')
  t.match(res.headers['cache-control'], /private/)
  const etag = res.headers.etag
  t.ok(etag, 'ETag set')

  const again = await app.inject({ url: '/v1/scores?items=a,b,c,zz', headers: { ...headers, 'if-none-match': String(etag) } })
  t.equal(again.statusCode, 304)
  t.equal(again.body, '')

  await app.events.publish(score('olga', 'b', 0.5, 5), 'rest')
  const changed = await app.inject({ url: '/v1/scores?items=a,b,c,zz', headers: { ...headers, 'if-none-match': String(etag) } })
  t.equal(changed.statusCode, 200, 'a new score changes the ETag')
  t.not(changed.headers.etag, etag)
})

t.test('GET /v1/scores refuses a missing or oversized item list naming the field', async (t) => {
  const app = await buildTestApp(t)
  const headers = bearer(await mint({ sub: 'pia', agent_id: 'ag-p' }))
  for (const url of ['/v1/scores', '/v1/scores?items=', '/v1/scores?items=,,', `/v1/scores?items=${Array.from({ length: 101 }, (_, i) => i).join(',')}`]) {
    const res = await app.inject({ url, headers })
    t.equal(res.statusCode, 400, url)
    t.match(res.json(), { statusCode: 400, message: /items/ }, url)
  }
  const anonymous = await app.inject('/v1/scores?items=a')
  t.equal(anonymous.statusCode, 401)
})

t.test('/readyz: the fan-out canary comes back with Redis, and names the check when it cannot', async (t) => {
  const redis = await startRedisServer()
  t.teardown(() => redis.stop())
  const app = await buildTestApp(t, { REDIS_URL: redis.url, READY_CANARY_MS: '2000' })
  const readyz = async () => {
    let res = await app.inject('/readyz')
    for (let i = 0; res.statusCode !== 200 && i < 100; i++) {
      await new Promise((r) => setTimeout(r, 100))
      res = await app.inject('/readyz')
    }
    return res
  }
  const ready = await readyz()
  t.equal(ready.statusCode, 200)
  t.equal(ready.json().checks.fanout, 'ok')

  await redis.stop()
  const down = await app.inject('/readyz')
  t.equal(down.statusCode, 503)
  // A canary result is shared for a second: the next one names the failure.
  await waitFor('the canary fails', async () => /canary/.test((await app.inject('/readyz')).json().checks.fanout))

  await redis.restart()
  t.equal((await readyz()).statusCode, 200, 'ready again once Redis is back')
})

t.test('memory mode (no Redis): publish, replay and latest work in one process', async (t) => {
  const app = await buildTestApp(t, {}, { memory: true })
  const ids = [
    await app.events.publish(score('quinn', 'a', 1, 1), 'rest'),
    await app.events.publish(score('quinn', 'a', 2, 2), 'rest')
  ]
  t.same(await app.events.latest('quinn', ['a']), [score('quinn', 'a', 2, 2)])
  const replay = await app.events.read(app.events.userTopic('quinn'), ids[0])
  t.same(replay.events.map((e) => e.id), [ids[1]])
  t.equal((await app.inject('/readyz')).statusCode, 200)
})

t.test('defect 10: /v1/scores answers 503 with Retry-After: 1, not 500, when Redis is unreachable', async (t) => {
  const redis = await startRedisServer()
  t.teardown(() => redis.stop())
  const app = await buildTestApp(t, { REDIS_URL: redis.url })
  const headers = bearer(await mint({ sub: 'rita', agent_id: 'ag-r' }))
  t.equal((await app.inject({ url: '/v1/scores?items=a', headers })).statusCode, 200)
  await redis.stop()
  const res = await app.inject({ url: '/v1/scores?items=a', headers })
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], '1')
  t.match(res.json(), { statusCode: 503, error: 'Service Unavailable', message: /retry shortly/ })
})
