import fc from 'fast-check'
import t from 'tap'
import { compareEventIds, formatPosition, isEventId, nextEventId, parseEventId, parsePosition } from '../../src/events/event-id.js'

/** `<ms>-<seq>` as Redis stream ids are written: up to 15 digits each. */
const part = fc.oneof(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 999_999_999_999_999 }))
const eventId = fc.tuple(part, part).map(([ms, seq]) => `${ms}-${seq}`)

const sign = (n: number) => Math.sign(n)

t.test('event ids: parse, and order by (ms, seq) everywhere', async (t) => {
  fc.assert(
    fc.property(eventId, eventId, (left, right) => {
      if (!isEventId(left)) throw new Error(`${left} not an id`)
      const a = parseEventId(left)
      const b = parseEventId(right)
      if (!a || !b) throw new Error('unparsed')
      const byTuple = sign(a.ms - b.ms || a.seq - b.seq)
      if (sign(compareEventIds(left, right)) !== byTuple) throw new Error(`compare(${left}, ${right})`)
      if (sign(compareEventIds(right, left)) !== -byTuple) throw new Error('not antisymmetric')
    }),
    { numRuns: 2000 }
  )
  t.pass('2000 random pairs')
})

/** The browser client's order of SSE ids (public/client.js): digit runs compared as 20-digit numbers. */
const clientKey = (id: string) => id.replace(/\d+/g, (digits) => digits.padStart(20, '0'))

t.test('positions: survive format and parse, and a position grown part by part sorts after in the client’s order', async (t) => {
  const position = fc.array(eventId, { minLength: 1, maxLength: 16 })
  fc.assert(
    fc.property(position, fc.array(fc.nat(), { minLength: 1, maxLength: 16 }), (parts, grow) => {
      const text = formatPosition(parts)
      if (formatPosition(parsePosition(text, parts.length) ?? []) !== text) throw new Error(`${text} does not survive`)
      // Grow some parts (never shrink one), at least one strictly: a later position of the same stream.
      const later = parts.map((id, index) => {
        const parsed = parseEventId(id)
        const step = grow[index % grow.length] % 3
        return parsed && (step || index === 0) ? `${parsed.ms}-${parsed.seq + Math.max(step, 1)}` : id
      })
      if (!(clientKey(formatPosition(later)) > clientKey(text))) throw new Error(`${formatPosition(later)} not after ${text}`)
    }),
    { numRuns: 2000 }
  )
  t.pass('2000 random positions')
})

t.test('nextEventId: strictly increasing whatever the clock does (still, forward, backward)', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 2_000_000_000_000 }), { minLength: 1, maxLength: 100 }), (clock) => {
      let last: string | null = null
      let highest = -1
      for (const now of clock) {
        const id = nextEventId(last, now)
        if (last && compareEventIds(last, id) >= 0) throw new Error(`${id} after ${last} at ${now}`)
        highest = Math.max(highest, now)
        if (parseEventId(id)?.ms !== highest) throw new Error(`${id}: its time is not the newest seen (${highest})`)
        last = id
      }
    }),
    { numRuns: 1000 }
  )
  t.pass('1000 random clocks')
})

t.test('anything else is not an event id', async (t) => {
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (text) => {
      const valid = /^\d{1,15}-\d{1,15}$/.test(text)
      if (isEventId(text) !== valid) throw new Error(JSON.stringify(text))
    }),
    { numRuns: 2000 }
  )
  t.pass('2000 random strings')
})
