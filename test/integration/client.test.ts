/**
 * The browser client (public/client.js) running in Node 20 (global fetch and ReadableStream, no
 * navigator.locks: the unshared path) against real gateways on real ports, with a real Redis.
 * Cross-origin, cookie sessions and tab sharing need a browser: test/browser covers those.
 */
import type { FastifyInstance } from 'fastify'
import { spawn } from 'node:child_process'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { subscribe, type ScoreEvent, type Status, type SubscribeOptions } from '../../public/client.js'
import { buildTestApp, deletePrefix, listen, logCapture, uniquePrefix, type Teardown } from '../helpers/app.js'
import { bucketsFile, openStream, score } from '../helpers/sse.js'
import { metricValue } from '../helpers/metrics.js'
import { freePort } from '../helpers/ports.js'
import { bearer, mint } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const CLIENT = new URL('../../public/client.js', import.meta.url).href
const STREAM = '/events/personalized-rating'

/** Fresh JWTs for one user, as a page's getToken would fetch them; every one handed out is kept. */
function tokens(sub: string, expiresIn = 300) {
  const issued: string[] = []
  return {
    issued,
    getToken: async () => {
      const token = await mint({ sub, agent_id: `ag-${sub}` }, { expiresIn })
      issued.push(token)
      return token
    }
  }
}

/** A subscription whose callbacks are recorded; closed when the test ends. */
function subscribed(t: Teardown, options: Omit<SubscribeOptions, 'onScore' | 'onGap' | 'onStatus'>) {
  const got = {
    scores: [] as ScoreEvent[],
    /** Each status the page went through (a change of reason while retrying is in `codes`). */
    statuses: [] as Status[],
    codes: [] as (number | undefined)[],
    /** Scores and gaps in the order the page saw them. */
    log: [] as (ScoreEvent | 'gap')[],
    items: () => got.scores.map((e) => e.item_id),
    live: () => waitFor('live', () => got.statuses.at(-1) === 'live'),
    close: () => {}
  }
  const sub = subscribe({
    ...options,
    onScore: (e) => {
      got.scores.push(e)
      got.log.push(e)
    },
    onGap: () => got.log.push('gap'),
    onStatus: (s, code) => {
      if (got.statuses.at(-1) !== s) got.statuses.push(s)
      got.codes.push(code)
    }
  })
  got.close = () => sub.close()
  t.teardown(() => sub.close())
  return got
}

const openStreams = (app: FastifyInstance) => metricValue(app.metrics.sseOpen)

/**
 * Two replicas on one Redis prefix: `serving` (the client's URL) and `publisher`. restart() takes
 * the serving one down, runs `meanwhile` (publishing on the other), then starts a new process on
 * the same port: a replica restart as the client sees it.
 */
async function replicas(t: Teardown, env: Record<string, string> = {}) {
  const KEY_PREFIX = uniquePrefix()
  t.teardown(() => deletePrefix(KEY_PREFIX))
  const all = { KEY_PREFIX, DRAIN_MS: '100', SSE_RETRY_MS: '100', ...env }
  const publisher = await buildTestApp(t, all)
  let serving = await buildTestApp(t, all)
  const url = await listen(serving)
  const { port } = serving.server.address() as AddressInfo
  return {
    url,
    publisher,
    serving: () => serving,
    async restart(meanwhile: () => Promise<void>) {
      await serving.close()
      await meanwhile()
      serving = await buildTestApp(t, all)
      await serving.listen({ port, host: '127.0.0.1' })
    }
  }
}

t.test('paints from /v1/scores, then each score once, in order; a ticket per connection, never a JWT in a URL', async (t) => {
  const logs = logCapture()
  const app = await buildTestApp(t, {}, { logStream: logs.stream })
  const url = await listen(app)
  const painted = score('ann', 'p-1', 2.5)
  await app.events.publish(painted, 'rest')
  const user = tokens('ann')
  const items = ['p-1', ...Array.from({ length: 10 }, (_, i) => `q-${i}`)]
  const got = subscribed(t, { url, getToken: user.getToken, items })
  await got.live()
  await waitFor('the paint', () => got.scores.length === 1)
  t.same(got.scores, [painted], 'the latest score of a listed item, painted from /v1/scores')

  await app.events.publish(score('ann', 'not-listed', 1), 'rest')
  await app.events.publish(score('bob', 'q-0', 1), 'rest')
  for (let i = 0; i < 10; i++) await app.events.publish(score('ann', `q-${i}`, 3, i), 'feed')
  await waitFor('ten scores', () => got.scores.length === 11)
  t.same(got.items(), items, 'each listed score once, in publish order; no other item, no other user')
  t.same(got.statuses, ['connecting', 'live'])

  const streamRequests = logs.lines.map((l) => JSON.parse(l) as { req?: { url: string } }).filter((l) => l.req?.url.startsWith(STREAM))
  t.equal(streamRequests.length, 1, 'one stream request')
  t.match(streamRequests[0].req?.url, /[?&]ticket=/, 'opened with a ticket')
  t.ok(user.issued.length > 0 && user.issued.every((token) => !logs.lines.some((l) => l.includes(token))), 'no JWT in any URL or log line')
})

t.test('connections cut while scores flow: each reconnect has a fresh ticket and lastEventId; nothing lost or doubled', async (t) => {
  const logs = logCapture()
  const BUCKETS_FILE = await bucketsFile(t, { capacity: 10000, refill_rate: 10000 })
  const app = await buildTestApp(t, { BUCKETS_FILE, SSE_RETRY_MS: '50' }, { logStream: logs.stream })
  const url = await listen(app)
  const user = tokens('cy')
  const got = subscribed(t, { url, getToken: user.getToken })
  await got.live()
  const ids = [await app.events.publish(score('cy', 'n-0', 1, 0), 'feed')]
  let cuts = 0
  await waitFor('the first score', () => got.scores.length === 1)
  for (let i = 1; i < 150; i++) {
    ids.push(await app.events.publish(score('cy', `n-${i}`, 1, i), 'feed'))
    if (i % 40 === 0) {
      await waitFor('the stream live again', () => got.statuses.at(-1) === 'live')
      app.server.closeAllConnections() // the network drops, a proxy restarts
      cuts++
    }
    if (i % 5 === 0) await sleep(5) // a feed's pace, so cuts land mid-stream
  }
  await waitFor('all 150 scores', () => got.scores.length >= 150)
  t.same(got.items(), ids.map((_, i) => `n-${i}`), 'every score once, in order')
  t.ok(got.statuses.includes('retrying'), 'the page saw the stream go')
  t.equal(got.statuses.at(-1), 'live')

  const urls = logs.lines.map((l) => JSON.parse(l) as { req?: { url: string } }).flatMap((l) => (l.req?.url.startsWith(STREAM) ? [l.req.url] : []))
  t.ok(cuts >= 2 && urls.length >= cuts + 1, `a stream request per connection (${cuts} cuts, ${urls.length} requests)`)
  t.ok(urls.every((u) => u.includes('ticket=')), 'each with a ticket')
  t.ok(urls.slice(1).every((u) => /[?&]lastEventId=\d+-\d+/.test(u)), 'each reconnect names the last id seen')
  t.ok(user.issued.length >= urls.length, 'getToken asked for each connection')
  t.ok(user.issued.every((token) => !logs.lines.some((l) => l.includes(token))), 'no JWT in any URL or log line')
})

t.test('a replica restart: the client retries until the new process answers and resumes there', async (t) => {
  const cluster = await replicas(t)
  const got = subscribed(t, { url: cluster.url, getToken: tokens('dee').getToken })
  await got.live()
  const ids = [await cluster.publisher.events.publish(score('dee', 'r-0', 1, 0), 'feed')]
  await waitFor('the first score', () => got.scores.length === 1)
  await cluster.restart(async () => {
    await waitFor('retrying', () => got.statuses.at(-1) === 'retrying')
    for (let i = 1; i < 6; i++) ids.push(await cluster.publisher.events.publish(score('dee', `r-${i}`, 1, i), 'feed'))
  })
  await waitFor('the scores published while down', () => got.scores.length >= 6)
  t.same(got.items(), ['r-0', 'r-1', 'r-2', 'r-3', 'r-4', 'r-5'])
  t.same(got.statuses, ['connecting', 'live', 'retrying', 'live'])
})

t.test(
  'a stream cut before its first score still resumes without loss',
  async (t) => {
    const cluster = await replicas(t)
    const got = subscribed(t, { url: cluster.url, getToken: tokens('eve').getToken })
    await got.live()
    await cluster.restart(async () => {
      await waitFor('retrying', () => got.statuses.at(-1) === 'retrying')
      for (let i = 0; i < 5; i++) await cluster.publisher.events.publish(score('eve', `f-${i}`, 1, i), 'feed')
    })
    await waitFor('live again', () => got.statuses.at(-1) === 'live')
    await waitFor('the five scores published while down', () => got.scores.length >= 5, 20_000)
    t.same(got.items(), ['f-0', 'f-1', 'f-2', 'f-3', 'f-4'])
  }
)

t.test('a ratings:all client (a position of one id per partition): every score once across a replica restart', async (t) => {
  const cluster = await replicas(t)
  const getToken = () => mint({ sub: 'ops-client', agent_id: 'ag-ops-client', scope: 'ratings:all' })
  const got = subscribed(t, { url: cluster.url, getToken })
  await got.live()
  const users = ['all-a', 'all-b', 'all-c', 'all-d']
  const items: string[] = []
  const publish = async (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      items.push(`all-${i}`)
      await cluster.publisher.events.publish(score(users[i % users.length], `all-${i}`, 1, i), 'feed')
    }
  }
  await publish(0, 8)
  await waitFor('the first scores', () => got.scores.length === 8)
  await cluster.restart(() => publish(8, 20))
  await publish(20, 24)
  await waitFor('every score', () => got.scores.length >= 24)
  t.same(new Set(got.items()), new Set(items), 'every user’s scores')
  t.equal(got.items().length, items.length, 'each once')
})

t.test('a token that expires mid-stream: expired, getToken again, no score lost', async (t) => {
  const app = await buildTestApp(t, { SSE_RETRY_MS: '100' })
  const url = await listen(app)
  const user = tokens('fox', 2)
  const got = subscribed(t, { url, getToken: user.getToken })
  await got.live()
  const items: string[] = []
  for (let i = 0; i < 40; i++) {
    items.push(`x-${i}`)
    await app.events.publish(score('fox', `x-${i}`, 1, i), 'feed')
    if (i === 0) await waitFor('the first score', () => got.scores.length === 1)
    await sleep(100) // scores keep coming across at least one expiry
  }
  await waitFor('all 40 scores', () => got.scores.length >= 40)
  t.same(got.items(), items, 'every score once, in order')
  const expired = await metricValue(app.metrics.sseClosed, { reason: 'expired' })
  t.ok(expired >= 1, `the gateway ended ${expired} stream(s) with expired`)
  t.ok(user.issued.length >= 1 + expired, `getToken asked again after each expiry (${user.issued.length} tokens)`)
})

t.test('a gap: /v1/scores is refetched for the items and painted before onGap', async (t) => {
  const cluster = await replicas(t, { HISTORY_MAX: '5' })
  const items = ['g-0', 'g-1', 'g-2', 'g-3']
  const got = subscribed(t, { url: cluster.url, getToken: tokens('gil').getToken, items })
  await got.live()
  await cluster.publisher.events.publish(score('gil', 'g-0', 0.5, 0), 'feed')
  await waitFor('the first score', () => got.scores.length === 1)
  const latest = new Map<string, number>()
  await cluster.restart(async () => {
    for (let i = 0; i < 12; i++) {
      const event = score('gil', items[i % 4], 1 + i / 10, i)
      latest.set(event.item_id, event.rating)
      await cluster.publisher.events.publish(event, 'feed')
    }
  })
  await waitFor('onGap', () => got.log.includes('gap'), 60_000) // reconnects back off: generous on a loaded machine
  const shown = new Map<string, number>()
  for (const entry of got.log.slice(0, got.log.indexOf('gap'))) if (entry !== 'gap') shown.set(entry.item_id, entry.rating)
  t.same(shown, latest, 'when onGap runs, every card already holds its latest score')
  t.equal(got.log.filter((e) => e === 'gap').length, 1, 'one gap')
  const next = score('gil', 'g-0', 4.9, 99)
  latest.set('g-0', next.rating)
  await cluster.publisher.events.publish(next, 'feed')
  await waitFor('the next live score', () => got.scores.at(-1)?.rating === next.rating)
  t.same(new Map(got.scores.map((e) => [e.item_id, e.rating])), latest, 'after the replay, every card holds its latest score')
  const afterGap = got.log.slice(got.log.indexOf('gap') + 1) as ScoreEvent[]
  const repeated = items.filter((item) => {
    const first = afterGap.find((e) => e.item_id === item)
    return first && shown.get(item) === first.rating && first.timestamp !== next.timestamp
  })
  t.same(repeated, [], 'the replay does not bring a painted score again')
})

t.test(
  'a resume the gateway cannot serve (its history is gone): onGap, then live from its current position',
  async (t) => {
    const before = await buildTestApp(t, { DRAIN_MS: '100', SSE_RETRY_MS: '100' })
    const url = await listen(before)
    const { port } = before.server.address() as AddressInfo
    const got = subscribed(t, { url, getToken: tokens('hub').getToken, items: ['h-0'] })
    await got.live()
    await before.events.publish(score('hub', 'h-0', 1, 0), 'feed')
    await waitFor('the first score', () => got.scores.length === 1)
    await before.close()
    const after = await buildTestApp(t, { SSE_RETRY_MS: '100' }) // a key prefix of its own: no history at all
    await after.listen({ port, host: '127.0.0.1' })
    await waitFor('onGap', () => got.log.includes('gap'), 60_000) // reconnects back off: generous on a loaded machine
    await got.live()
    await after.events.publish(score('hub', 'h-0', 2, 1), 'feed')
    await waitFor('a score from the new history', () => got.scores.at(-1)?.rating === 2)
    t.equal(got.log.filter((e) => e === 'gap').length, 1, 'one gap')
  }
)

t.test('a refused stream (429) is retried no sooner than its Retry-After', async (t) => {
  const logs = logCapture()
  const app = await buildTestApp(t, { SSE_MAX_STREAMS_PER_AGENT: '1', SSE_HEARTBEAT_MS: '500' }, { logStream: logs.stream })
  const url = await listen(app)
  const holder = await openStream(t, `${url}${STREAM}`, bearer(await mint({ sub: 'hal', agent_id: 'ag-hal' })))
  t.equal(holder.status, 200)
  const got = subscribed(t, { url, getToken: tokens('hal').getToken })
  type Line = { time: number; reqId: string; req?: { url: string }; res?: { statusCode: number } }
  const lines = () => logs.lines.map((l) => JSON.parse(l) as Line)
  const refused = () => lines().filter((l) => l.res?.statusCode === 429).map((l) => l.reqId)
  await waitFor('two refusals', () => refused().length >= 2)
  holder.close()
  await got.live()
  const requests = lines().filter((l) => l.req?.url.startsWith(STREAM))
  const answered = new Map(lines().flatMap((l) => (l.res ? [[l.reqId, l.time] as const] : [])))
  const waits = requests.slice(1).flatMap((next, i) => (refused().includes(requests[i].reqId) ? [next.time - (answered.get(requests[i].reqId) ?? 0)] : []))
  t.ok(waits.length >= 2, 'retried after each refusal')
  t.ok(waits.every((ms) => ms >= 990), `each retry waited Retry-After (at least 1 s): ${waits.join(', ')} ms`)
  t.ok(got.codes.includes(429), 'onStatus told the page why: 429')
  t.equal(got.statuses.at(-1), 'live', 'in once a slot is free')
})

t.test('close(): the stream ends on the server and no callback follows', async (t) => {
  const app = await buildTestApp(t)
  const url = await listen(app)
  const got = subscribed(t, { url, getToken: tokens('ida').getToken })
  await got.live()
  await waitFor('the stream open on the gateway', async () => (await openStreams(app)) === 1)
  got.close()
  got.close()
  t.same(got.statuses, ['connecting', 'live', 'closed'], 'closed once')
  await waitFor('the stream closed on the gateway', async () => (await openStreams(app)) === 0)
  const witness = await openStream(t, `${url}${STREAM}`, bearer(await mint({ sub: 'ida', agent_id: 'ag-ida2' })))
  await witness.waitFor((m) => m.length > 0)
  await app.events.publish(score('ida', 'late', 1), 'rest')
  await witness.waitFor(() => witness.events().length === 1)
  t.same(got.scores, [], 'a score published after close() reaches another subscriber, not this one')
})

/** Runs the client in a process of its own: it exits by itself only when close() left nothing behind. */
function runAlone(script: string, env: Record<string, string>) {
  const source = `import { subscribe } from ${JSON.stringify(CLIENT)}\nconst statuses = []\n${script}`
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d))
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
  return { exited, output: () => out, kill: () => child.kill('SIGKILL') }
}

t.test('close() leaves no timer or socket: a process running only the client exits by itself', async (t) => {
  const app = await buildTestApp(t)
  const url = await listen(app)
  const closedPort = await freePort() // nothing listens there
  const cases = {
    // Open, live, then closed: the stream's socket and its idle timer must go.
    live: `const sub = subscribe({ url: process.env.URL, getToken: () => process.env.TOKEN, onScore() {},
      onStatus: (s) => { statuses.push(s); if (s === 'live') sub.close() } })`,
    // Closed while waiting to reconnect (nothing listens): the backoff timer must go.
    retrying: `const sub = subscribe({ url: 'http://127.0.0.1:' + process.env.DEAD_PORT, getToken: () => process.env.TOKEN, onScore() {},
      onStatus: (s) => { statuses.push(s); if (s === 'retrying') sub.close() } })`,
    // Closed while the page's getToken is still working: nothing opens afterwards.
    'getToken pending': `let release
      const sub = subscribe({ url: process.env.URL, getToken: () => new Promise((r) => (release = r)), shared: false, onScore() {},
      onStatus: (s) => statuses.push(s) })
      setTimeout(() => { sub.close(); release(process.env.TOKEN) }, 50)`
  }
  const token = await mint({ sub: 'jay', agent_id: 'ag-jay' })
  for (const [name, script] of Object.entries(cases)) {
    const child = runAlone(`${script}\nprocess.on('exit', () => console.log(JSON.stringify(statuses)))`, {
      URL: url,
      TOKEN: token,
      DEAD_PORT: String(closedPort)
    })
    t.teardown(child.kill)
    const code = await Promise.race([child.exited, sleep(15_000).then(() => 'still running')])
    t.equal(code, 0, `${name}: the process ended by itself`)
    t.equal(JSON.parse(child.output() || '[]').at(-1), 'closed', `${name}: last status closed`)
  }
  await waitFor('no stream left on the gateway', async () => (await openStreams(app)) === 0)
})
