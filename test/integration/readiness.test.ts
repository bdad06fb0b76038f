import { Redis } from 'ioredis'
import t from 'tap'
import { buildTestApp, REDIS_URL } from '../helpers/app.js'
import { startRedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

/** Every Redis stream under `prefix` with its length. */
async function streamsUnder(redis: Redis, prefix: string): Promise<Record<string, number>> {
  const found: Record<string, number> = {}
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500, 'TYPE', 'stream')
    cursor = next
    for (const key of keys) found[key] = await redis.xlen(key)
  } while (cursor !== '0')
  return found
}

t.test('defect 4: /readyz never writes into an event stream', async (t) => {
  const prefix = `mbt-ready-${process.pid}-${Date.now()}`
  const app = await buildTestApp(t, { KEY_PREFIX: prefix })
  const redis = new Redis(REDIS_URL)
  t.teardown(() => redis.quit())
  const first = await app.inject('/readyz')
  t.equal(first.statusCode, 200, 'ready: the canary came back')
  const answers = await Promise.all(Array.from({ length: 30 }, () => app.inject('/readyz')))
  for (let i = 0; i < 30; i++) answers.push(await app.inject('/readyz'))
  t.ok(answers.every((res) => res.statusCode === 200), '60 more probes, all ready')
  const written = Object.entries(await streamsUnder(redis, prefix)).filter(([, length]) => length > 0)
  t.same(written, [], 'no entry in any stream: the canary displaced no event')
})

t.test('concurrent and repeated /readyz calls share one canary per second', async (t) => {
  const server = await startRedisServer()
  t.teardown(() => server.stop())
  const app = await buildTestApp(t, { REDIS_URL: server.url })
  const redis = new Redis(server.url)
  t.teardown(() => redis.quit())
  await waitFor('ready', async () => (await app.inject('/readyz')).statusCode === 200)
  await redis.config('RESETSTAT')
  const started = Date.now()
  let probes = 0
  while (Date.now() - started < 2500) {
    await Promise.all(Array.from({ length: 20 }, () => app.inject('/readyz')))
    probes += 20
  }
  const seconds = Math.ceil((Date.now() - started) / 1000)
  const published = Number(/cmdstat_spublish:calls=(\d+)/.exec(await redis.info('commandstats'))?.[1] ?? 0)
  t.ok(published >= 1 && published <= seconds + 1, `${published} canaries for ${probes} probes in ${seconds} s`)
})

t.test('/readyz answers within its budget when Redis hangs, and is ready again once it wakes', async (t) => {
  const server = await startRedisServer()
  t.teardown(() => server.stop())
  const app = await buildTestApp(t, { REDIS_URL: server.url, READY_CANARY_MS: '300' })
  await waitFor('ready', async () => (await app.inject('/readyz')).statusCode === 200)
  server.pause() // SIGSTOP: connections stay open, nothing answers
  t.teardown(() => server.resume())
  // Generous: answers at all prove no check waits for Redis (before, /readyz hung ~20 s).
  await waitFor('a 503 naming the hung checks', async () => {
    const res = await app.inject('/readyz')
    return res.statusCode === 503 && /no answer within 300 ms/.test(JSON.stringify(res.json().checks))
  }, 10_000)
  t.pass('503 with the reason, while Redis is frozen')
  server.resume()
  await waitFor('ready again', async () => (await app.inject('/readyz')).statusCode === 200, 15_000)
})
