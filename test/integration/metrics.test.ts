import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { buildTestApp, listen } from '../helpers/app.js'
import { moltbook } from '../helpers/moltbook.js'
import { waitFor } from '../helpers/wait.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'
import { openStream } from '../helpers/sse.js'
import { bearer, mint } from '../helpers/tokens.js'

/** Issue 6 item 1: every family, under the `moltbridge_` prefix. */
const FAMILIES = [
  'bucket_decisions_total',
  'bucket_tokens_remaining',
  'redis_command_duration_seconds',
  'redis_errors_total',
  'moltbook_connected',
  'moltbook_connects_total',
  'moltbook_reconnects_total',
  'moltbook_messages_total',
  'forward_queue_depth',
  'forward_attempts_total',
  'forward_duration_seconds',
  'forward_dedup_hits_total',
  'sse_streams_open',
  'sse_events_sent_total',
  'sse_events_conflated_total',
  'sse_streams_closed_total',
  'feed_to_publish_seconds',
  'feed_stage_seconds',
  'fanout_lag_seconds',
  'ingest_leader'
]
/** A few of prom-client's default process metrics. */
const DEFAULTS = ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']

const USER = 'mt-user-4f1c2a'
const AGENT = 'mt-agent-9b7e3d'

/** The sum of the samples (`name{labels} value`) whose labels include `labels`; undefined when none. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let sum: number | undefined
  for (const line of text.split('\n')) {
    const match = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!match || match[1] !== name) continue
    const have = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum = (sum ?? 0) + Number(match[3])
  }
  return sum
}

t.test('/metrics after a short pipeline run: every family, default process metrics, no identities or secrets', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'mb-metrics-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const BUCKETS_FILE = join(dir, 'buckets.json')
  const policy = (action: string, capacity: number, refill_rate: number) => ({
    action,
    bucket_name: `metrics-${action}`,
    capacity,
    refill_rate,
    key_selector: 'jwt.claims.agent_id'
  })
  // REST: 2 at once then one every 100 s, so the third call is a 429.
  await writeFile(BUCKETS_FILE, JSON.stringify([policy('rest', 2, 0.01), policy('forward', 1000, 1000), policy('delivery', 1000, 1000)]))

  const openclaw = await startTestOpenClaw(t)
  const feed = await moltbook(t)
  const app = await buildTestApp(t, { ...openclawEnv(openclaw), MOLTBOOK_URL: feed.url, BUCKETS_FILE, LEASE_MS: '1000' })
  const url = await listen(app)
  const token = await mint({ sub: USER, agent_id: AGENT })
  const stream = await openStream(t, `${url}/events/personalized-rating`, bearer(token))
  t.equal(stream.status, 200)
  await waitFor('feed connected', () => feed.clients() === 1)

  // Feed: a valid rating (twice: the second is a dedup hit), an unparseable message, an invalid rating.
  const rating = { user_id: USER, item_id: 'mt-item', timestamp: 1721234567, rating: 4 }
  feed.send(rating)
  await stream.waitFor(() => stream.events().length === 1)
  feed.send(rating)
  feed.sendRaw('{not json')
  feed.send({ ...rating, rating: 9 })

  // REST: two allowed, the third limited.
  const statuses: number[] = []
  for (let i = 0; i < 3; i++) {
    const res = await app.inject({ method: 'POST', url: '/v1/rating', headers: bearer(token), payload: { ...rating, timestamp: 1721234600 + i } })
    statuses.push(res.statusCode)
  }
  t.same(statuses, [200, 200, 429], 'the third REST call is limited')

  // Reconnect: the feed drops the socket, the gateway comes back.
  feed.dropAll()
  await waitFor('feed reconnected', () => feed.connections === 2 && feed.clients() === 1)
  stream.close()
  await stream.ended

  let text = ''
  await waitFor('counters settle', async () => {
    text = (await app.inject('/metrics')).body
    return (
      (sample(text, 'moltbridge_forward_dedup_hits_total') ?? 0) >= 1 &&
      (sample(text, 'moltbridge_sse_streams_closed_total', { reason: 'client' }) ?? 0) >= 1 &&
      sample(text, 'moltbridge_moltbook_messages_total', { result: 'invalid' }) === 2
    )
  })
  for (const family of FAMILIES) t.match(text, new RegExp(`^# TYPE moltbridge_${family} `, 'm'), `${family} exported`)
  for (const name of DEFAULTS) t.match(text, new RegExp(`^moltbridge_${name}(\\{[^}]*\\})? `, 'm'), `default ${name}`)

  t.equal(sample(text, 'moltbridge_bucket_decisions_total', { action: 'rest', result: 'limited' }), 1, 'the 429 is counted')
  t.ok(sample(text, 'moltbridge_bucket_decisions_total', { action: 'rest', result: 'allowed' }), 'allowed decisions counted')
  t.ok(sample(text, 'moltbridge_bucket_tokens_remaining_count', { action: 'rest' }), 'fill level observed')
  t.ok(sample(text, 'moltbridge_moltbook_connects_total')! >= 2, 'connects counted')
  t.ok(sample(text, 'moltbridge_moltbook_reconnects_total')! >= 1, 'the reconnect is counted')
  t.equal(sample(text, 'moltbridge_moltbook_connected'), 1)
  t.ok(sample(text, 'moltbridge_moltbook_messages_total', { result: 'valid' })! >= 2, 'valid messages counted')
  t.ok(sample(text, 'moltbridge_forward_attempts_total', { source: 'feed', outcome: '2xx' })! >= 1, 'feed forward counted')
  t.ok(sample(text, 'moltbridge_forward_attempts_total', { source: 'rest', outcome: '2xx' })! >= 2, 'REST forwards counted')
  t.ok(sample(text, 'moltbridge_forward_duration_seconds_count', { source: 'feed' }), 'forward latency observed')
  t.ok(sample(text, 'moltbridge_feed_to_publish_seconds_count'), 'feed-to-publish latency observed')
  // Where a rating's latency accrues: both valid sends were queued and picked, only the first was
  // answered (the second is a dedup hit), before it was published.
  const stage = (name: string, what = 'count') => sample(text, `moltbridge_feed_stage_seconds_${what}`, { stage: name }) ?? 0
  t.equal(stage('queued'), 2, 'both valid feed ratings timed into the queue')
  t.equal(stage('picked'), 2, 'both timed to a forwarder')
  t.equal(stage('answered'), 1, 'the forwarded one timed to its OpenClaw answer')
  t.ok(stage('answered', 'sum') <= sample(text, 'moltbridge_feed_to_publish_seconds_sum')!, 'published after answered')
  t.ok(sample(text, 'moltbridge_fanout_lag_seconds_count')! >= 3, "the fan-out lag of every event reaching the open stream's topic")
  t.ok(sample(text, 'moltbridge_sse_events_sent_total')! >= 1, 'SSE events counted')
  t.equal(sample(text, 'moltbridge_sse_streams_open'), 0, 'the closed stream is no longer open')
  t.equal(sample(text, 'moltbridge_ingest_leader'), 1, 'this replica leads ingest')
  t.ok(sample(text, 'moltbridge_redis_command_duration_seconds_count', { op: 'bucket' }), 'Redis latency observed')

  // No identity or secret anywhere: not in a label, not in a help text.
  for (const secret of [USER, AGENT, token, openclaw.apiKey, 'mt-item']) t.notOk(text.includes(secret), `no ${secret.slice(0, 12)}… in /metrics`)
  const labelValues = new Set([...text.matchAll(/(\w+)="([^"]*)"/g)].map((m) => `${m[1]}=${m[2]}`))
  t.comment(`label values: ${[...labelValues].filter((v) => !v.startsWith('le=') && !v.startsWith('quantile=')).join(' ')}`)
})
