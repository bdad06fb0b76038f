import { createParser } from 'eventsource-parser'
import fc from 'fast-check'
import t from 'tap'
import { reconnectDelay, retryAfterMs, sseParser, type SseMessage } from '../../public/client.js'

/** A seeded PRNG (mulberry32), so "random" draws are the same on every run. */
function seeded(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const unit = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })
const ceiling = (attempt: number, retryMs: number, maxMs: number) => {
  const base = Math.max(retryMs, 100)
  return Math.min(Math.max(maxMs, base), base * 2 ** attempt)
}

t.test('reconnect policy', async (t) => {
  t.test('every delay lies in [Retry-After, Retry-After + ceiling), a whole number of ms', async () => {
    fc.assert(
      fc.property(
        fc.nat(200),
        fc.nat(120_000),
        fc.nat(3_600_000),
        fc.integer({ min: 1, max: 600_000 }),
        unit,
        (attempt, retryMs, after, maxMs, r) => {
          const delay = reconnectDelay(attempt, { retryMs, retryAfterMs: after, maxMs, random: () => r })
          const top = ceiling(Math.min(attempt, 30), retryMs, maxMs)
          return Number.isInteger(delay) && delay >= after && delay < after + top
        }
      )
    )
  })

  t.test('the ceiling doubles per attempt from retry: up to the cap, and never shrinks', async (t) => {
    const top = () => 0.999999
    const delays = [0, 1, 2, 3, 4, 5, 6].map((attempt) => reconnectDelay(attempt, { retryMs: 500, maxMs: 10_000, random: top }))
    t.same(delays, [499, 999, 1999, 3999, 7999, 9999, 9999])
    t.equal(reconnectDelay(10_000, { retryMs: 500, maxMs: 10_000, random: top }), 9999, 'a huge attempt count stays capped')
    fc.assert(
      fc.property(fc.nat(60), fc.nat(60_000), unit, (attempt, retryMs, r) => {
        const options = { retryMs, random: () => r }
        return reconnectDelay(attempt + 1, options) >= reconnectDelay(attempt, options)
      })
    )
  })

  t.test("retry: is the first attempt's ceiling; a retry above the cap still counts", async (t) => {
    t.equal(reconnectDelay(0, { retryMs: 2000, random: () => 0.5 }), 1000)
    t.equal(reconnectDelay(0, { retryMs: 60_000, maxMs: 30_000, random: () => 0.5 }), 30_000, 'the server asked for more than the cap')
    t.equal(reconnectDelay(0, { random: () => 0.5 }), 500, 'default 1000 ms before the server says')
    t.equal(reconnectDelay(0, { retryMs: 0, random: () => 0.999 }), 99, 'retry: 0 cannot make a tight loop: 100 ms floor')
  })

  t.test('full jitter: seeded draws cover the whole range, not a band', async (t) => {
    const random = seeded(42)
    const draws = Array.from({ length: 2000 }, () => reconnectDelay(3, { retryMs: 1000, random }))
    const top = ceiling(3, 1000, 30_000)
    t.ok(Math.min(...draws) < top * 0.01, 'some near zero')
    t.ok(Math.max(...draws) > top * 0.99, 'some near the ceiling')
    const tenths = new Set(draws.map((d) => Math.floor((d / top) * 10)))
    t.equal(tenths.size, 10, 'every tenth of the range is used')
    const again = seeded(42)
    t.same(Array.from({ length: 2000 }, () => reconnectDelay(3, { retryMs: 1000, random: again })), draws, 'the same seed, the same delays')
  })

  t.test('Retry-After is a floor the jitter adds to, never shortened', async (t) => {
    t.equal(reconnectDelay(0, { retryMs: 1000, retryAfterMs: 5000, random: () => 0 }), 5000)
    t.equal(reconnectDelay(4, { retryMs: 1000, retryAfterMs: 5000, random: () => 0.5 }), 13_000)
  })
})

t.test('Retry-After parsing', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z')
  t.equal(retryAfterMs('3', now), 3000, 'seconds')
  t.equal(retryAfterMs(' 1 ', now), 1000, 'spaces around')
  t.equal(retryAfterMs('Thu, 01 Jan 2026 00:00:07 GMT', now), 7000, 'an HTTP date')
  t.equal(retryAfterMs('Wed, 31 Dec 2025 23:59:00 GMT', now), 0, 'a past date: no wait')
  t.equal(retryAfterMs('soon', now), 0, 'garbage: no wait')
  t.equal(retryAfterMs('-5', now), 0, 'negative: no wait')
  t.equal(retryAfterMs(null, now), 0)
  t.equal(retryAfterMs(undefined, now), 0)
  fc.assert(fc.property(fc.nat(100_000), (s) => retryAfterMs(String(s), now) === s * 1000))
})

/** Runs the client's parser over chunks; returns messages and retry values. */
function parse(chunks: string[]) {
  const messages: SseMessage[] = []
  const retries: number[] = []
  const feed = sseParser((m) => messages.push(m), (ms) => retries.push(ms))
  for (const chunk of chunks) feed(chunk)
  return { messages, retries }
}

t.test('SSE parser', async (t) => {
  t.test('an id/data message, a named event, retry', async (t) => {
    const { messages, retries } = parse(['retry: 1500\n\nid: 1-0\ndata: {"a":1}\n\nevent: gap\ndata: 1-0\n\n'])
    t.same(messages, [
      { id: '1-0', event: 'message', data: '{"a":1}' },
      { id: undefined, event: 'gap', data: '1-0' }
    ])
    t.same(retries, [1500])
  })

  t.test('an id-only message moves the position without being an event', async (t) => {
    t.same(parse(['id: 7-3\n\n']).messages, [{ id: '7-3', event: 'message', data: undefined }])
    t.same(parse(['event: x\n\n']).messages, [], 'no id, no data: nothing')
  })

  t.test('CRLF, CR and LF line endings, alone or mixed', async (t) => {
    const expected = [{ id: '1-0', event: 'message', data: 'a' }, { id: '2-0', event: 'message', data: 'b' }]
    t.same(parse(['id: 1-0\r\ndata: a\r\n\r\nid: 2-0\r\ndata: b\r\n\r\n']).messages, expected, 'CRLF')
    t.same(parse(['id: 1-0\rdata: a\r\rid: 2-0\rdata: b\r\r']).messages, expected, 'CR')
    t.same(parse(['id: 1-0\r\ndata: a\n\rid: 2-0\rdata: b\r\n\n']).messages, expected, 'mixed')
  })

  t.test('a CRLF split between two reads is one line end, not two', async (t) => {
    t.same(parse(['data: a\r', '\ndata: b\r', '\n\r', '\n']).messages, [{ id: undefined, event: 'message', data: 'a\nb' }])
    t.same(parse(['data: a\r', '', '\n\r', '', '\n']).messages.length, 1, 'an empty read in between changes nothing')
    t.same(parse(['data: a\r\r']).messages.length, 1, 'a CR ends the message at once, without waiting for a possible LF')
  })

  t.test('a message split at every character arrives once, whole', async (t) => {
    const text = 'id: 12-4\ndata: {"user_id":"u","rating":4.5}\n\n'
    t.same(parse([...text]).messages, parse([text]).messages)
    t.equal(parse([...text]).messages.length, 1)
    t.same(parse([text.slice(0, -1)]).messages, [], 'no blank line yet: nothing dispatched')
  })

  t.test('comments (heartbeats) are skipped', async (t) => {
    t.same(parse([': heartbeat\n\n:\n\n']).messages, [])
    t.same(parse(['data: a\n: in between\ndata: b\n\n']).messages, [{ id: undefined, event: 'message', data: 'a\nb' }])
  })

  t.test('multi-line data, empty data, field without colon, one leading space stripped', async (t) => {
    t.same(parse(['data: one\ndata:two\ndata:  three\n\n']).messages[0].data, 'one\ntwo\n three')
    t.same(parse(['data\n\n']).messages, [{ id: undefined, event: 'message', data: '' }], '"data" alone: an empty event')
    t.same(parse(['data:\ndata:\n\n']).messages[0].data, '\n')
  })

  t.test('ignored: a retry that is not all digits, an id with NULL, unknown fields', async (t) => {
    const { messages, retries } = parse(['retry: 12a\nretry: -1\nid: a\u0000b\nfoo: bar\ndata: x\n\n'])
    t.same(retries, [])
    t.same(messages, [{ id: undefined, event: 'message', data: 'x' }])
  })

  t.test('the id belongs to its own message only', async (t) => {
    t.same(
      parse(['id: 1-0\ndata: a\n\ndata: b\n\n']).messages.map((m) => m.id),
      ['1-0', undefined]
    )
  })

  t.test('agrees with eventsource-parser on any stream cut into any chunks', async () => {
    const value = fc.constantFrom('', 'x', ' y', '1-0', '2-5', '{"a":1}', '12', 'é', '  ')
    const line = fc.oneof(
      fc.tuple(fc.constantFrom('data', 'id', 'event', 'retry', 'foo', ''), fc.constantFrom(':', ': ', ''), value).map(([f, s, v]) => f + s + v),
      fc.constant('')
    )
    const eol = fc.constantFrom('\n', '\r', '\r\n')
    const stream = fc.array(fc.tuple(line, eol).map(([l, e]) => l + e), { maxLength: 40 }).map((parts) => parts.join(''))
    fc.assert(
      fc.property(stream, fc.array(fc.nat(), { maxLength: 10 }), (text, cuts) => {
        const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b)
        const chunks = [0, ...points].map((p, i, all) => text.slice(p, all[i + 1] ?? text.length))
        // eventsource-parser holds a CR that ends its input (a CRLF may follow); ours ends the line
        // at once (less delay). A final LF makes both read the same stream.
        if (text.endsWith('\r')) chunks.push('\n')
        const expected: SseMessage[] = []
        const expectedRetries: number[] = []
        const oracle = createParser({
          onEvent: (e) => expected.push({ id: e.id, event: e.event ?? 'message', data: e.data }),
          onRetry: (ms) => expectedRetries.push(ms)
        })
        for (const chunk of chunks) oracle.feed(chunk)
        const got = parse(chunks)
        const events = got.messages.filter((m) => m.data !== undefined)
        return JSON.stringify([events, got.retries]) === JSON.stringify([expected, expectedRetries])
      }),
      { numRuns: 2000 }
    )
  })
})
