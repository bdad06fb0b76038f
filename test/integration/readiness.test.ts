import { Redis } from 'ioredis'
import t from 'tap'
import { buildTestApp, REDIS_URL } from '../helpers/app.js'

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
