import { pino } from 'pino'
import t, { type Test } from 'tap'
import { MemoryDeadLetterStore } from '../../src/forward/dead-letters.js'
import { MemoryDedupStore } from '../../src/forward/dedup.js'
import { Forwarder, type ForwarderOptions } from '../../src/forward/forwarder.js'
import type { BucketAnswer } from '../../src/forward/rating-stages.js'
import { MemoryQueueStore } from '../../src/forward/memory-queue.js'
import { take, type BucketLimits, type BucketState } from '../../src/limits/token-bucket.js'
import { createMetrics } from '../../src/metrics.js'
import type { FeedRating, Rating, ScoreEvent } from '../../src/rating.js'
import { personalize } from '../../src/simulators/openclaw.js'
import { UpstreamError } from '../../src/upstream/errors.js'
import { logCapture } from '../helpers/app.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { feedRating } from '../helpers/forwarder.js'
import { metricValue } from '../helpers/metrics.js'
import { waitFor } from '../helpers/wait.js'

/** OpenClaw as the forwarder sees it: a score per rating, or the errors the real client throws. */
class OpenClawStandIn {
  readonly calls: { rating: Rating; at: number }[] = []
  answer: 'score' | 'unavailable' | 'limited' | 'rejected' = 'score'
  retryAfterMs = 1000

  constructor(private readonly clock: FakeClock) {}

  rate = async (rating: Rating): Promise<ScoreEvent> => {
    this.calls.push({ rating, at: this.clock.now() })
    if (this.answer === 'unavailable') throw new UpstreamError('status', 'OpenClaw answered 503', 503)
    if (this.answer === 'limited') throw new UpstreamError('limited', 'OpenClaw is rate limiting', 429, this.retryAfterMs)
    if (this.answer === 'rejected') throw new UpstreamError('status', 'OpenClaw answered 422', 422)
    return personalize(rating)
  }

  count(item: string): number {
    return this.calls.filter((call) => call.rating.item_id === item).length
  }
}

/** Token buckets per agent on the test clock, with the gateway's own bucket math. */
function buckets(clock: FakeClock, limitsOf: (agent: string) => BucketLimits) {
  const states = new Map<string, BucketState>()
  const taken: string[] = []
  const takeToken = async (_action: 'forward', agent: string): Promise<BucketAnswer> => {
    const result = take(states.get(agent), limitsOf(agent), clock.now())
    states.set(agent, result.state)
    if (result.allowed) taken.push(agent)
    return result
  }
  return { take: takeToken, taken }
}

interface Setup {
  options?: Partial<ForwarderOptions>
  limits?: (agent: string) => BucketLimits
  /** publish() fails this many times first (the history store is away). */
  publishFailures?: number
  /** OpenClaw and the event store in place of the stand-ins. */
  rate?: (rating: Rating) => Promise<ScoreEvent>
  publish?: (event: ScoreEvent) => Promise<void>
}

const ROOMY: BucketLimits = { capacity: 1000, refillRate: 1000 }

function startForwarder(t: Test, setup: Setup = {}) {
  const clock = new FakeClock()
  const queue = new MemoryQueueStore()
  const dedup = new MemoryDedupStore({ ttlSeconds: 600, now: clock.now })
  const deadLetters = new MemoryDeadLetterStore(100)
  const openclaw = new OpenClawStandIn(clock)
  const bucket = buckets(clock, setup.limits ?? (() => ROOMY))
  const metrics = createMetrics()
  const logs = logCapture()
  const published: ScoreEvent[] = []
  let publishFailures = setup.publishFailures ?? 0
  const publish = async (event: ScoreEvent) => {
    if (publishFailures-- > 0) throw new Error('history store unavailable')
    published.push(event)
  }
  const log = pino({ level: 'info' }, logs.stream)
  const options: ForwarderOptions = {
    concurrency: 4,
    heldMax: 100,
    queueMax: 1000,
    queueClaimMs: 30_000,
    callTimeoutMs: 1000,
    backoff: { baseMs: 100, maxMs: 400, random: () => 0.999 },
    ...setup.options
  }
  const forwarder = new Forwarder(
    { queue, dedup, deadLetters, take: bucket.take, rate: setup.rate ?? openclaw.rate, publish: setup.publish ?? publish, metrics, log, clock },
    options
  )
  forwarder.start()
  t.teardown(() => forwarder.close())
  return { forwarder, clock, queue, dedup, deadLetters, openclaw, taken: bucket.taken, metrics, published, logs }
}

/** Each rating's own agent, so the tests can tell lanes apart. */
const byAgent = (agent: string, count: number): FeedRating[] =>
  Array.from({ length: count }, (_, index) => feedRating(`${agent}-user`, `${agent}-${index}`, 1721230000 + index, agent))

/** Lets whatever the last clock step started run as far as it can (memory stores answer in microtasks). */
const settle = () => new Promise((resolve) => setImmediate(resolve))

const lines = (logs: { lines: string[] }, message: string) =>
  logs.lines.filter((line) => line.includes(`"msg":"${message}"`))

t.test('every rating goes through each stage once: forwarded, published, acknowledged', async (t) => {
  const { forwarder, queue, openclaw, taken, published } = startForwarder(t)
  const ratings = byAgent('a', 3)
  await forwarder.enqueue(ratings, Date.now())
  await waitFor('3 published', () => published.length === 3)
  await waitFor('the queue empty', async () => (await queue.depth()) === 0)
  for (const rating of ratings) t.equal(openclaw.count(rating.item_id), 1, `${rating.item_id} forwarded once`)
  t.same(taken, ['a', 'a', 'a'], 'one token per rating, from its agent')
  t.same(published.map((event) => event.item_id).sort(), ratings.map((rating) => rating.item_id).sort())
})

t.test('scheduling: agents take turns, whatever order their ratings were queued in', async (t) => {
  const { forwarder, openclaw, published } = startForwarder(t, { options: { concurrency: 1 } })
  await forwarder.enqueue([...byAgent('a', 3), ...byAgent('b', 3)], Date.now())
  await waitFor('6 published', () => published.length === 6)
  const agents = openclaw.calls.map((call) => call.rating.item_id.split('-')[0])
  t.same(agents, ['a', 'b', 'a', 'b', 'a', 'b'], 'round-robin over the two lanes')
})

t.test('scheduling: an agent whose bucket is empty waits for its next token while the others flow', async (t) => {
  const slow: BucketLimits = { capacity: 1, refillRate: 1 }
  const { forwarder, clock, openclaw, published, metrics } = startForwarder(t, {
    limits: (agent) => (agent === 'slow' ? slow : ROOMY)
  })
  await forwarder.enqueue([...byAgent('slow', 3), ...byAgent('fast', 3)], Date.now())
  await waitFor('the fast agent and the slow one\'s single token used', () => published.length === 4)
  await waitFor('the slow lane waiting for its bucket', () => clock.nextIn() !== null)
  t.equal(clock.nextIn(), 1000, 'it waits exactly until its next token (1 per second)')
  t.same(
    ['fast-0', 'fast-1', 'fast-2', 'slow-0', 'slow-1', 'slow-2'].map((item) => openclaw.count(item)),
    [1, 1, 1, 1, 0, 0],
    'the other agent was not held up; the slow one did not call OpenClaw'
  )
  t.ok((await metricValue(metrics.forwardDelayed, { reason: 'bucket' })) >= 1, 'counted as a bucket delay')

  const waitingSince = clock.now()
  clock.advance(1000)
  await waitFor('the next slow rating', () => published.length === 5)
  clock.advance(1000)
  await waitFor('the last slow rating', () => published.length === 6)
  t.same(
    openclaw.calls.slice(4).map((call) => [call.rating.item_id, call.at - waitingSince]),
    [
      ['slow-1', 1000],
      ['slow-2', 2000]
    ],
    'one slow rating per token, in its order'
  )
})

t.test('a 429 pauses every call until its Retry-After; the token paid is not charged again', async (t) => {
  const { forwarder, clock, openclaw, taken, published, metrics } = startForwarder(t)
  openclaw.answer = 'limited'
  openclaw.retryAfterMs = 2000
  await forwarder.enqueue([...byAgent('a', 1), ...byAgent('b', 1)], Date.now())
  await waitFor('both refused', () => openclaw.calls.length === 2)
  await waitFor('the pause scheduled', () => clock.nextIn() !== null)
  const limitedAt = clock.now()
  openclaw.answer = 'score'
  clock.advance(1999)
  await settle()
  t.equal(openclaw.calls.length, 2, 'no call before Retry-After passed')
  clock.advance(1)
  await waitFor('both published', () => published.length === 2)
  t.ok(
    openclaw.calls.slice(2).every((call) => call.at >= limitedAt + 2000),
    'retried once the pause was over'
  )
  t.same(taken.sort(), ['a', 'b'], 'each agent charged once for its rating')
  t.equal(await metricValue(metrics.forwardDelayed, { reason: 'upstream_429' }), 2)
})

t.test('a rating refused for good is dead-lettered and acknowledged at once: the ratings behind it flow', async (t) => {
  const { forwarder, clock, queue, dedup, deadLetters, openclaw, published, metrics } = startForwarder(t, { options: { heldMax: 2 } })
  openclaw.answer = 'rejected'
  const poison = byAgent('a', 2)
  await forwarder.enqueue(poison, Date.now())
  await waitFor('both dead-lettered', async () => (await deadLetters.size()) === 2)
  t.equal(clock.nextIn(), null, 'no retry scheduled')
  openclaw.answer = 'score'
  await forwarder.enqueue(byAgent('b', 1), Date.now())
  await waitFor('the next rating published', () => published.length === 1)
  await waitFor('the queue empty', async () => (await queue.depth()) === 0)
  t.same(poison.map((r) => openclaw.count(r.item_id)), [1, 1], 'each refused rating called once')
  t.match(await deadLetters.list(10), [
    { rating: poison[0], reason: 'rejected', status: 422, attempts: 1, detail: 'OpenClaw answered 422' },
    { rating: poison[1], reason: 'rejected', status: 422, attempts: 1 }
  ])
  t.equal(await dedup.claim(poison[0], 1000), 'done', 'marked handled: nobody calls OpenClaw for it again')
  t.equal(await metricValue(metrics.forwardDeadLettered, { reason: 'rejected' }), 2)
})

t.test('a dead-lettered rating whose entry comes back (reclaimed after a stall) is acked, not set aside twice', async (t) => {
  const { forwarder, queue, deadLetters, openclaw } = startForwarder(t)
  openclaw.answer = 'rejected'
  const [poison] = byAgent('a', 1)
  await forwarder.enqueue([poison], Date.now())
  await waitFor('dead-lettered', async () => (await deadLetters.size()) === 1)
  // What another replica sees when this one stalled before its ack: the same rating, queued again.
  await forwarder.enqueue([poison], Date.now())
  await waitFor('the queue empty', async () => (await queue.depth()) === 0)
  t.equal(openclaw.count(poison.item_id), 1, 'OpenClaw called once')
  t.equal(await deadLetters.size(), 1, 'one dead letter')
})

t.test('a failed publish is retried from the publish stage: OpenClaw is not called again', async (t) => {
  const { forwarder, clock, queue, openclaw, taken, published, logs } = startForwarder(t, { publishFailures: 1 })
  const [rating] = byAgent('a', 1)
  await forwarder.enqueue([rating], Date.now())
  await waitFor('the retry scheduled', () => clock.nextIn() !== null)
  t.equal(published.length, 0)
  clock.advance(400)
  await waitFor('published on the retry', () => published.length === 1)
  await waitFor('the queue empty', async () => (await queue.depth()) === 0)
  t.equal(openclaw.count(rating.item_id), 1, 'OpenClaw called once')
  t.same(taken, ['a'], 'charged once')
  await waitFor('the recovery logged', () => lines(logs, 'forwarding recovered').length === 1)
  const delayed = lines(logs, 'forwarding delayed')
  t.equal(delayed.length, 1, 'one warning for the outage')
  t.match(delayed[0], '"kind":"store"')
})

t.test('a duplicate of a forwarded rating is acknowledged without a call or a token', async (t) => {
  const { forwarder, queue, dedup, openclaw, taken, published, metrics } = startForwarder(t)
  const [rating] = byAgent('a', 1)
  await dedup.done(rating) // another replica forwarded it
  await forwarder.enqueue([rating], Date.now())
  await waitFor('the queue empty', async () => (await queue.depth()) === 0)
  t.equal(openclaw.calls.length, 0)
  t.equal(published.length, 0)
  t.same(taken, [])
  t.equal(await metricValue(metrics.dedupHits), 1)
})

t.test('a rating another consumer is forwarding waits, then turns out to be a duplicate', async (t) => {
  const { forwarder, clock, queue, dedup, openclaw, metrics } = startForwarder(t)
  const [rating] = byAgent('a', 1)
  t.equal(await dedup.claim(rating, 60_000), 'claimed', 'claimed by another consumer')
  await forwarder.enqueue([rating], Date.now())
  await waitFor('the retry scheduled', () => clock.nextIn() !== null)
  t.equal(await metricValue(metrics.forwardDelayed, { reason: 'inflight' }), 1)
  await dedup.done(rating) // the other consumer finished
  clock.advance(400)
  await waitFor('the queue empty', async () => (await queue.depth()) === 0)
  t.equal(openclaw.calls.length, 0, 'never forwarded twice')
  t.equal(await metricValue(metrics.dedupHits), 1)
})

t.test('backoff: OpenClaw down, retries after delays that double up to the cap', async (t) => {
  // random() 0.999: each delay is just under its ceiling (base 100 ms doubling, max 400 ms).
  const { forwarder, clock, openclaw, taken, published, logs } = startForwarder(t)
  openclaw.answer = 'unavailable'
  const [rating] = byAgent('a', 1)
  await forwarder.enqueue([rating], Date.now())
  const delays: number[] = []
  for (let call = 1; call <= 4; call++) {
    await waitFor(`call ${call}`, () => openclaw.calls.length === call)
    await waitFor(`retry ${call} scheduled`, () => clock.nextIn() !== null)
    const delay = clock.nextIn() ?? 0
    delays.push(delay)
    clock.advance(delay - 1)
    await settle()
    t.equal(openclaw.calls.length, call, `no call before the delay of retry ${call} passed`)
    if (call === 4) openclaw.answer = 'score'
    clock.advance(1)
  }
  t.same(delays, [199, 399, 399, 399], 'full-jitter ceilings 200, 400, then capped at 400')
  await waitFor('published once OpenClaw is back', () => published.length === 1)
  t.same(taken, ['a'], 'charged once across five calls')
  await waitFor('the recovery logged', () => lines(logs, 'forwarding recovered').length === 1)
  t.equal(lines(logs, 'forwarding delayed').length, 1, 'one warning, not one per retry')
})

t.test('close leaves what is not published in the queue, and cancels every retry', async (t) => {
  const { forwarder, clock, queue, openclaw } = startForwarder(t)
  openclaw.answer = 'unavailable'
  await forwarder.enqueue(byAgent('a', 2), Date.now())
  await waitFor('both retries scheduled', () => openclaw.calls.length === 2 && clock.nextIn() !== null)
  await forwarder.close()
  clock.advance(10_000)
  await settle()
  t.equal(openclaw.calls.length, 2, 'no retry after close')
  t.equal(await queue.depth(), 2, 'both still unacknowledged')
})

t.test('OpenClaw gets at most callConcurrency calls at once; a rating past its answer frees its slot at once', async (t) => {
  const answers: (() => void)[] = []
  const publishes: (() => void)[] = []
  const published: ScoreEvent[] = []
  let calling = 0
  let most = 0
  const rate = async (rating: Rating) => {
    most = Math.max(most, ++calling)
    await new Promise<void>((resolve) => answers.push(resolve))
    calling--
    return personalize(rating)
  }
  // The publish (a Redis round trip after the answer) waits until the test lets it go.
  const publish = (event: ScoreEvent) => new Promise<void>((resolve) => publishes.push(() => resolve(void published.push(event))))
  const { forwarder } = startForwarder(t, { options: { concurrency: 8, callConcurrency: 2 }, rate, publish })
  await forwarder.enqueue(['a', 'b', 'c', 'd', 'e', 'f'].flatMap((agent) => byAgent(agent, 1)), Date.now())

  await waitFor('two calls in flight', () => answers.length === 2)
  await settle()
  t.equal(answers.length, 2, 'no third call while two are unanswered')
  answers.shift()?.()
  await waitFor('the answered rating is publishing', () => publishes.length === 1)
  await waitFor('a third call starts while that publish is still pending', () => answers.length === 2)
  for (let i = 0; i < 100 && published.length < 6; i++) {
    answers.shift()?.()
    publishes.shift()?.()
    await settle()
  }
  t.equal(published.length, 6, 'every rating forwarded and published')
  t.equal(most, 2, 'never more than callConcurrency calls at once')
})
