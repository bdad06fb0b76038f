import { writeFile } from 'node:fs/promises'
import { performance } from 'node:perf_hooks'
import t from 'tap'
import { deletePrefix, REDIS_URL, TEST_SECRET, uniquePrefix } from '../helpers/app.js'
import { policiesFile } from '../helpers/policies.js'
import { buildGateway, startGateway, startGateways, type GatewayProcess } from '../helpers/processes.js'
import { openStream, type SseClient } from '../helpers/sse.js'
import { bearer, mint } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

/** A read policy that does not refill within a test: a burst shows the capacity exactly. */
const readPolicy = (capacity: number) => [
  { action: 'read', bucket_name: 'reads', refill_rate: 0.001, capacity, key_selector: 'jwt.claims.agent_id' }
]


/** `count` reads at once by one agent through one replica: how many were admitted. */
async function burst(gateway: GatewayProcess, agent: string, count: number): Promise<number> {
  const headers = bearer(await mint({ sub: `${agent}-user`, agent_id: agent }))
  const statuses = await Promise.all(
    Array.from({ length: count }, () => fetch(`${gateway.url}/v1/scores?items=a`, { headers }).then(async (res) => (await res.arrayBuffer(), res.status)))
  )
  return statuses.filter((status) => status === 200).length
}

const admin = async () => bearer(await mint({ sub: 'ops', scope: 'moltbridge:admin' }))
const nowS = () => Math.floor(Date.now() / 1000)

t.test('two replicas on one Redis', async (t) => {
  await buildGateway()
  const prefix = uniquePrefix()
  t.teardown(() => deletePrefix(prefix))
  const env = { REDIS_URL, KEY_PREFIX: prefix, JWT_SECRET: TEST_SECRET, BUCKETS_FILE: await policiesFile(t, readPolicy(40)) }
  const [gw1, gw2] = await startGateways(t, 2, env)

  t.test('revoke a user: its streams on both replicas end within a second, its old token is 401, a new one works', async (t) => {
    const old = await mint({ sub: 'fleet-user', agent_id: 'fleet-agent' }, { issuedAt: nowS() - 5 })
    const streams: SseClient[] = []
    for (const gateway of [gw1, gw2, gw1, gw2]) streams.push(await openStream(t, `${gateway.url}/events/personalized-rating`, bearer(old)))
    const bystander = await openStream(t, `${gw2.url}/events/personalized-rating`, bearer(await mint({ sub: 'other-user', agent_id: 'fleet-agent' })))
    t.same([...streams, bystander].map((s) => s.status), [200, 200, 200, 200, 200])
    // Each stream has its first message (retry:), so each is attached on its replica.
    await Promise.all([...streams, bystander].map((s) => s.waitFor((messages) => messages.length > 0)))

    const endedAt = streams.map((stream) => stream.ended.then(() => performance.now()))
    const started = performance.now()
    const res = await fetch(`${gw1.url}/admin/revoke`, {
      method: 'POST',
      headers: { ...(await admin()), 'content-type': 'application/json' },
      body: JSON.stringify({ user_id: 'fleet-user' })
    })
    t.equal(res.status, 200)
    const revokedAt = ((await res.json()) as { revoked_at: number }).revoked_at
    const latencies = (await Promise.all(endedAt)).map((at) => Math.round(at - started))
    t.comment(`revoke → stream closed, per stream (gw1, gw2, gw1, gw2): ${latencies.join(', ')} ms`)
    t.ok(Math.max(...latencies) < 1000, `every stream closed within a second (${Math.max(...latencies)} ms)`)
    for (const stream of streams) t.ok(stream.messages.some((m) => m.event === 'revoked'), 'told why')

    for (const gateway of [gw1, gw2]) {
      const again = await openStream(t, `${gateway.url}/events/personalized-rating`, bearer(old))
      t.equal(again.status, 401, `${gateway.name}: a reconnect with the old token is refused`)
    }
    t.notOk(bystander.messages.some((m) => m.event === 'revoked'), 'another user of the same agent keeps its stream')
    t.equal(await Promise.race([bystander.ended.then(() => 'ended'), Promise.resolve('open')]), 'open')

    await waitFor('the second after the revocation', () => Date.now() >= Math.ceil(revokedAt / 1000) * 1000 + 1)
    const fresh = await mint({ sub: 'fleet-user', agent_id: 'fleet-agent' })
    for (const gateway of [gw1, gw2]) {
      const stream = await openStream(t, `${gateway.url}/events/personalized-rating`, bearer(fresh))
      t.equal(stream.status, 200, `${gateway.name}: a new token opens a stream`)
    }
  })

  t.test('override an agent through one replica: every replica admits it 5 in a burst, others still 40', async (t) => {
    const headers = { ...(await admin()), 'content-type': 'application/json' }
    for (const [agent, via] of [['capped-1', gw1], ['capped-2', gw2]] as const) {
      const res = await fetch(`${via.url}/admin/limits/${agent}`, {
        method: 'PUT',
        headers,
        body: JSON.stringify({ read: { refill_rate: 0.001, capacity: 5 } })
      })
      t.equal(res.status, 200)
    }
    t.equal(await burst(gw2, 'capped-1', 10), 5, 'set on gw1, applied on gw2')
    t.equal(await burst(gw1, 'capped-2', 10), 5, 'set on gw2, applied on gw1')
    t.equal(await burst(gw1, 'free-1', 50), 40, 'another agent on gw1: the policy')
    t.equal(await burst(gw2, 'free-2', 50), 40, 'another agent on gw2: the policy')
  })
})

t.test('SIGHUP re-reads BUCKETS_FILE; a file that does not validate keeps the old policies and logs why', async (t) => {
  await buildGateway()
  const file = await policiesFile(t, readPolicy(3))
  const gateway = await startGateway(t, 'gw-hup', { JWT_SECRET: TEST_SECRET, BUCKETS_FILE: file, LOG_LEVEL: 'info' })
  t.equal(await burst(gateway, 'hup-1', 5), 3, 'the policy of the file at start')

  await writeFile(file, JSON.stringify(readPolicy(6)))
  process.kill(gateway.pid, 'SIGHUP')
  await waitFor('the reload logged', () => gateway.output().includes('bucket policies reloaded from BUCKETS_FILE'))
  t.equal(await burst(gateway, 'hup-2', 8), 6, 'the new policy applies')

  await writeFile(file, JSON.stringify([{ action: 'read', bucket_name: 'reads', refill_rate: 0.001, capacity: -1, key_selector: 'jwt.claims.agent_id' }]))
  process.kill(gateway.pid, 'SIGHUP')
  await waitFor('the refusal logged', () => gateway.output().includes('BUCKETS_FILE reload refused'))
  const refusal = gateway.output().split('\n').find((line) => line.includes('BUCKETS_FILE reload refused')) ?? ''
  t.match(refusal, /capacity/, 'the log says why')
  t.ok(gateway.alive(), 'a SIGHUP never stops the gateway')
  t.equal(await burst(gateway, 'hup-3', 8), 6, 'the old policy stays')
})
