/**
 * The client's connection loop on fake timers: each wait it schedules is the policy's
 * (reconnectDelay): Retry-After as a floor, a ceiling doubling per failed attempt, the server's
 * `retry:`, and a fresh start once a stream opens. Answers come from an in-process fetch of real
 * `Response` objects; the same behaviour against a real gateway is test/integration/client.test.ts.
 */
import t from 'tap'
import { reconnectDelay, subscribe, type Status } from '../../public/client.js'
import type { Teardown } from '../helpers/app.js'
import { settle } from '../helpers/fake-clock.js'

const IDLE_MS = 99_999 // the idle timer, told apart from the reconnect waits by its length

interface Pending {
  ms: number
  run: () => void
}

/** Lets the event loop turn (setImmediate: not faked) until `check` holds; a bounded number of turns. */
async function turnsUntil(what: string, check: () => boolean): Promise<void> {
  for (let turn = 0; !check(); turn++) {
    if (turn > 10_000) throw new Error(`never happened: ${what}`)
    await settle()
  }
}

/** Replaces the global setTimeout/clearTimeout (what the client uses) until the test ends. */
function fakeTimers(t: Teardown) {
  const pending = new Set<Pending>()
  const real = { setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout }
  globalThis.setTimeout = ((run: () => void, ms: number) => {
    const timer = { ms, run }
    pending.add(timer)
    return timer
  }) as unknown as typeof setTimeout
  globalThis.clearTimeout = ((timer: Pending) => void pending.delete(timer)) as unknown as typeof clearTimeout
  t.teardown(() => Object.assign(globalThis, real))
  return {
    /** The reconnect wait now scheduled (not the idle timer), once there is one. */
    async nextWait(): Promise<Pending> {
      let found: Pending | undefined
      await turnsUntil('a reconnect wait', () => {
        found = [...pending].find((timer) => timer.ms !== IDLE_MS)
        return found !== undefined
      })
      return found!
    },
    async fire(timer: Pending) {
      pending.delete(timer)
      timer.run()
      await settle()
    }
  }
}

t.test('the loop waits what the policy says, and starts over once a stream opens', async (t) => {
  const timers = fakeTimers(t)
  const random = Math.random
  Math.random = () => 0.5
  t.teardown(() => (Math.random = random))

  // The stream's answers, one per connection attempt (cookie mode: one request per attempt).
  const stream = (body: string, keepOpen = false) =>
    new Response(
      new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(body))
          if (!keepOpen) controller.close()
        }
      }),
      { status: 200, headers: { 'content-type': 'text/event-stream' } }
    )
  const answers: (() => Response)[] = [
    () => new Response('{}', { status: 429, headers: { 'retry-after': '3' } }),
    () => new Response('{}', { status: 503, headers: { 'retry-after': '1' } }),
    () => {
      throw new TypeError('fetch failed')
    },
    () => stream('retry: 500\n\n'), // opens (attempt count back to 0), tells retry: 500, ends
    () => new Response('{}', { status: 503 }),
    () => stream('retry: 500\n\n', true)
  ]
  const realFetch = globalThis.fetch
  globalThis.fetch = (async () => {
    const next = answers.shift()
    if (!next) throw new Error('no more answers')
    return next()
  }) as typeof fetch
  t.teardown(() => (globalThis.fetch = realFetch))

  const statuses: [Status, number | undefined][] = []
  const sub = subscribe({ url: 'http://gateway.test', shared: false, idleMs: IDLE_MS, onScore() {}, onStatus: (s, code) => statuses.push([s, code]) })
  t.teardown(() => sub.close())
  const policy = (attempt: number, retryMs: number, retryAfterMs = 0) => reconnectDelay(attempt, { retryMs, retryAfterMs, random: () => 0.5 })
  const expected = [
    { ms: policy(0, 1000, 3000), why: '429 Retry-After: 3 → 3 s + jitter below 1 s' },
    { ms: policy(1, 1000, 1000), why: '503 Retry-After: 1 → 1 s + jitter below 2 s' },
    { ms: policy(2, 1000), why: 'network error → jitter below 4 s' },
    { ms: policy(0, 500), why: 'a stream opened then ended → attempts start over, ceiling = retry: 500' },
    { ms: policy(1, 500), why: '503 without Retry-After → jitter below 1 s' }
  ]
  for (const { ms, why } of expected) {
    const wait = await timers.nextWait()
    t.equal(wait.ms, ms, `${why}: ${ms} ms`)
    await timers.fire(wait)
  }
  await turnsUntil('live again', () => statuses.at(-1)?.[0] === 'live')
  t.same(statuses, [
    ['connecting', undefined],
    ['retrying', 429],
    ['retrying', 503],
    ['retrying', undefined],
    ['live', undefined],
    ['retrying', undefined],
    ['retrying', 503],
    ['live', undefined]
  ], 'the page was told each reason')
  sub.close()
  t.equal(answers.length, 0, 'every answer used: one request per attempt')
})
