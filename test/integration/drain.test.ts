import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { buildTestApp, deletePrefix, REDIS_URL, TEST_SECRET, uniquePrefix } from '../helpers/app.js'
import { moltbook } from '../helpers/moltbook.js'
import { waitFor } from '../helpers/wait.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'
import { buildGateway, ROOT, startGateway, type GatewayProcess } from '../helpers/processes.js'
import { openStream, type SseClient } from '../helpers/sse.js'
import { bearer, mint } from '../helpers/tokens.js'

const PATH = '/events/personalized-rating'

/** A replica of its own on the shared Redis, with its own key prefix (removed at the end). */
function replicaEnv(prefix: string, extra: Record<string, string> = {}): Record<string, string> {
  t.teardown(() => deletePrefix(prefix))
  return { REDIS_URL, KEY_PREFIX: prefix, JWT_SECRET: TEST_SECRET, ...extra }
}

async function isLeader(gw: GatewayProcess): Promise<boolean> {
  const res = await fetch(`${gw.url}/readyz`).catch(() => null)
  const body = (await res?.json().catch(() => null)) as { details?: { ingest_lease?: { leader?: boolean } } } | null
  return body?.details?.ingest_lease?.leader === true
}

t.before(() => buildGateway())

t.test('SIGTERM: readiness 503, streams told to retry and closed spread over DRAIN_MS, exit 0', async (t) => {
  const DRAIN_MS = 2000
  const STREAMS = 10
  const gw = await startGateway(t, 'drain', replicaEnv(uniquePrefix(), { DRAIN_MS: String(DRAIN_MS), SSE_RETRY_MS: '1500' }))
  const clients: SseClient[] = []
  for (let i = 0; i < STREAMS; i++) {
    const client = await openStream(t, `${gw.url}${PATH}`, bearer(await mint({ sub: `dr-u${i}`, agent_id: `dr-a${i}` })))
    t.equal(client.status, 200, `stream ${i} open`)
    clients.push(client)
  }
  await Promise.all(clients.map((c) => c.waitFor((m) => m.length > 0)))

  const signalled = Date.now()
  const closedAfter: number[] = []
  for (const c of clients) void c.ended.then(() => closedAfter.push(Date.now() - signalled))
  const exited = gw.stop('SIGTERM')

  // While the streams drain the replica still answers, and says it is not ready.
  let ready = 200
  await waitFor('readyz 503', async () => {
    ready = await fetch(`${gw.url}/readyz`).then((r) => r.status, () => 0)
    return ready !== 200
  })
  t.equal(ready, 503, 'readiness turns 503 during the drain')
  const late = await openStream(t, `${gw.url}${PATH}`, bearer(await mint({ sub: 'dr-late', agent_id: 'dr-late' }))).catch(() => null)
  t.ok(late === null || late.status === 503, `a new stream is refused (${late?.status ?? 'connection refused'})`)

  await exited
  t.equal(gw.exitCode(), 0, 'exit 0 after a clean drain')
  const exitedAfter = Date.now() - signalled
  await Promise.all(clients.map((c) => c.ended))

  for (const [i, c] of clients.entries()) t.equal(c.messages.at(-1)?.retry, 1500, `stream ${i} ends with a retry hint`)
  const sorted = [...closedAfter].sort((a, b) => a - b)
  const early = sorted.filter((ms) => ms < DRAIN_MS * 0.1).length
  t.ok(early < STREAMS / 2, `streams are not closed as one herd (${early} of ${STREAMS} in the first 10% of DRAIN_MS)`)
  t.ok(sorted.at(-1)! - sorted[0] >= DRAIN_MS / 2, 'closes spread over at least half of DRAIN_MS')
  t.comment(`stream close times after SIGTERM (ms): ${sorted.join(', ')}; process exited after ${exitedAfter} ms`)
})

t.test('no rating is lost across a drain: the leader is stopped, the other replica takes over', async (t) => {
  const prefix = uniquePrefix()
  const openclaw = await startTestOpenClaw(t, { latencyMs: 40 })
  const feed = await moltbook(t, { rate: 40, users: ['nl-u1', 'nl-u2', 'nl-u3', 'nl-u4'], items: ['i1', 'i2', 'i3'] })
  const shared = { ...openclawEnv(openclaw), MOLTBOOK_URL: feed.url, LEASE_MS: '1500', QUEUE_CLAIM_MS: '2000', DRAIN_MS: '500' }
  const a = await startGateway(t, 'a', replicaEnv(prefix, shared))
  await waitFor('replica A leads', () => isLeader(a))
  const b = await buildTestApp(t, { ...shared, KEY_PREFIX: prefix })

  await waitFor('A forwards the feed', () => openclaw.received.length >= 40, 20_000)
  t.notOk(b.lease.isLeader(), 'B waits while A holds the lease')
  const sentBeforeSignal = feed.sent.length
  const signalled = Date.now()
  await a.stop('SIGTERM')
  t.equal(a.exitCode(), 0, `A drained and exited 0 (after ${Date.now() - signalled} ms)`)
  const holder = await b.redis!.get(b.keys.lease)
  t.notOk(holder?.includes(`:${a.pid}:`), `A released its lease on the way out (holder now: ${holder === null ? 'none' : 'B'})`)
  await waitFor('B takes over the lease', () => b.lease.isLeader(), 10_000)
  t.comment(`B leads ${Date.now() - signalled} ms after the SIGTERM`)
  const sentBeforeB = feed.sent.length
  await waitFor('the feed flows through B', () => feed.sent.length >= sentBeforeB + 40, 20_000)
  feed.setRate(0)

  const sent = [...feed.sent]
  const missing = () => sent.filter((r) => openclaw.count(r) === 0)
  await waitFor('every rating reaches OpenClaw', () => missing().length === 0, 20_000).catch((err: Error) => {
    throw new Error(`${err.message}: ${missing().length} of ${sent.length} missing`)
  })
  await sleep(500) // a duplicate would arrive now, not later: the queue is empty
  t.ok(sent.length >= 80, `${sent.length} ratings sent, ${sentBeforeB - sentBeforeSignal} of them while A drained`)
  t.same(
    sent.map((r) => openclaw.count(r)).filter((n) => n !== 1),
    [],
    'every rating the feed sent reached OpenClaw exactly once'
  )
})

t.test('a second signal forces the exit, without waiting for the drain', async (t) => {
  const gw = await startGateway(t, 'stuck', replicaEnv(uniquePrefix(), { DRAIN_MS: '30000' }))
  // Two streams: the first closes at once, the second only at the end of the 30 s window.
  for (const user of ['st-u1', 'st-u2']) {
    const client = await openStream(t, `${gw.url}${PATH}`, bearer(await mint({ sub: user, agent_id: user })))
    await client.waitFor((m) => m.length > 0)
  }
  const exited = gw.stop('SIGTERM')
  await waitFor('draining', async () => (await fetch(`${gw.url}/readyz`).then((r) => r.status, () => 0)) !== 200)
  process.kill(gw.pid, 'SIGTERM')
  await exited
  t.equal(gw.exitCode(), 1, 'the second SIGTERM exits 1')
})

t.test('a port in use stops the start with one line and exit 1', async (t) => {
  const blocker = await startGateway(t, 'blocker', replicaEnv(uniquePrefix()))
  const child = spawn(process.execPath, [join(ROOT, 'dist/src/server.js')], {
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: String(blocker.port), JWT_SECRET: TEST_SECRET, LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d))
  const [code] = (await once(child, 'exit')) as [number | null]
  t.equal(code, 1)
  t.match(stderr.trim(), /^Cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE[^\n]*$/, 'one line naming the cause')
})
