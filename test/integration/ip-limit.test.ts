import t from 'tap'
import { buildTestApp, deletePrefix, listen, uniquePrefix } from '../helpers/app.js'
import { startNginx } from '../helpers/nginx.js'
import { freePort } from '../helpers/ports.js'
import { startRedisServer } from '../helpers/redis-server.js'
import { waitFor } from '../helpers/wait.js'

const badToken = { authorization: 'Bearer not.a.token' }

for (const memory of [true, false]) {
  t.test(`pre-auth per-IP limit (${memory ? 'memory' : 'redis'})`, async (t) => {
    const app = await buildTestApp(t, { IP_RATE_LIMIT_MAX: '5' }, { memory })
    const from = (ip: string, url = '/v1/rating') => app.inject({ method: 'POST', url, headers: badToken, remoteAddress: ip, payload: {} })

    for (let i = 0; i < 3; i++) t.equal((await from('10.0.0.1')).statusCode, 401)
    for (let i = 0; i < 2; i++) t.equal((await from('10.0.0.1', '/nope')).statusCode, 404, 'unknown routes count too')
    const limited = await from('10.0.0.1')
    t.equal(limited.statusCode, 429, 'refused before any signature check')
    t.equal(limited.json().error, 'Too Many Requests')
    t.same(Object.keys(limited.json()).sort(), ['error', 'message', 'statusCode'])
    t.ok(Number(limited.headers['retry-after']) >= 1 && Number(limited.headers['retry-after']) <= 60)
    t.equal(limited.headers['ratelimit-policy'], '"ip";q=5;w=60')
    t.match(limited.headers.ratelimit, /^"ip";r=0;t=\d+$/)
    t.equal((await from('10.0.0.1', '/nope')).statusCode, 429, 'a 404 probe is limited as well')
    t.equal((await app.inject({ url: '/healthz', remoteAddress: '10.0.0.1' })).statusCode, 200, 'probes are exempt')
    t.equal((await from('10.0.0.2')).statusCode, 401, 'another address has its own count')
  })
}

t.test('behind a trusted proxy the address comes from X-Forwarded-For; from anyone else it is ignored', async (t) => {
  const app = await buildTestApp(t, { IP_RATE_LIMIT_MAX: '2', TRUST_PROXY: '10.9.9.0/24' }, { memory: true })
  const from = (ip: string, remoteAddress = '10.9.9.9') =>
    app.inject({ method: 'POST', url: '/v1/rating', headers: { ...badToken, 'x-forwarded-for': ip }, remoteAddress, payload: {} })
  await from('192.0.2.1')
  await from('192.0.2.1')
  t.equal((await from('192.0.2.1')).statusCode, 429)
  t.equal((await from('192.0.2.2')).statusCode, 401, 'one proxy does not mean one client')
  const direct: number[] = []
  for (const ip of ['198.51.100.1', '198.51.100.2', '198.51.100.3']) direct.push((await from(ip, '203.0.113.7')).statusCode)
  t.same(direct, [401, 401, 429], 'a client that is not the proxy cannot choose its address')
})

t.test('replicas on one Redis share the count', async (t) => {
  const prefix = uniquePrefix()
  t.teardown(() => deletePrefix(prefix))
  const env = { IP_RATE_LIMIT_MAX: '4', KEY_PREFIX: prefix }
  const [a, b] = [await buildTestApp(t, env), await buildTestApp(t, env)]
  const codes: number[] = []
  for (const app of [a, b, a, b, a]) codes.push((await app.inject({ url: '/nope', remoteAddress: '10.1.1.1' })).statusCode)
  t.same(codes, [404, 404, 404, 404, 429])
})

t.test('0 turns it off; a Redis outage never blocks everyone', async (t) => {
  const off = await buildTestApp(t, { IP_RATE_LIMIT_MAX: '0' }, { memory: true })
  const offCodes = await Promise.all(Array.from({ length: 20 }, () => off.inject('/nope')))
  t.ok(offCodes.every((r) => r.statusCode === 404))

  const down = await buildTestApp(t, { IP_RATE_LIMIT_MAX: '1', REDIS_URL: `redis://127.0.0.1:${await freePort()}` })
  const downCodes = await Promise.all(Array.from({ length: 3 }, () => down.inject('/nope')))
  t.same(downCodes.map((r) => r.statusCode), [404, 404, 404], 'skipped while Redis is unreachable')
})

t.test('a Redis that stops answering costs REDIS_TIMEOUT_MS, never a hang: the limit is skipped meanwhile', async (t) => {
  const server = await startRedisServer()
  t.teardown(() => server.stop())
  const app = await buildTestApp(t, { IP_RATE_LIMIT_MAX: '2', REDIS_URL: server.url, REDIS_TIMEOUT_MS: '100' })
  const probe = () => app.inject({ url: '/nope', remoteAddress: '10.7.7.7' })
  t.equal((await probe()).statusCode, 404)
  server.pause()
  t.teardown(() => server.resume())
  // Far above the budget: before the deadline, a frozen Redis held every request until it woke up.
  const hung = new Promise<'hung'>((resolve) => setTimeout(resolve, 10_000, 'hung').unref())
  const answers = await Promise.all([1, 2, 3].map(() => Promise.race([probe().then((res) => res.statusCode), hung])))
  t.same(answers, [404, 404, 404], 'answered while Redis is frozen, the per-IP limit skipped')
  const metrics = (await app.inject('/metrics')).body
  t.match(metrics, /moltbridge_redis_errors_total\{op="ip_limit"\} 3/, 'every skipped count is a counted Redis error')
  server.resume()
  await waitFor('the per-IP limit to apply again', async () => (await probe()).statusCode === 429)
  t.pass('limited again once Redis answers')
})

for (const trust of ['127.0.0.1', 'true']) {
  t.test(`defect 7: through real nginx, rotating a client-supplied X-Forwarded-For does not reset the limit (TRUST_PROXY=${trust})`, async (t) => {
    const app = await buildTestApp(t, { IP_RATE_LIMIT_MAX: '3', TRUST_PROXY: trust }, { memory: true })
    const { port } = new URL(await listen(app))
    const lb = await startNginx(t, [`127.0.0.1:${port}`])
    const codes: number[] = []
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${lb.url}/nope`, { headers: { 'x-forwarded-for': `198.51.100.${i}` } })
      codes.push(res.status)
    }
    t.same(codes, [404, 404, 404, 429, 429, 429], 'one client, one count, whatever it claims to be')
  })
}
