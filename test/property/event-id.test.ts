import fc from 'fast-check'
import t from 'tap'
import { compareEventIds, eventIdFromLex, isEventId, lexEventId, nextEventId, parseEventId } from '../../src/events/event-id.js'

/** `<ms>-<seq>` as Redis stream ids are written: up to 15 digits each. */
const part = fc.oneof(fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 999_999_999_999_999 }))
const eventId = fc.tuple(part, part).map(([ms, seq]) => `${ms}-${seq}`)

const sign = (n: number) => Math.sign(n)

t.test('event ids: parse, the fixed-width form and back; order by (ms, seq) everywhere', async (t) => {
  fc.assert(
    fc.property(eventId, eventId, (left, right) => {
      if (!isEventId(left)) throw new Error(`${left} not an id`)
      if (eventIdFromLex(lexEventId(left)) !== left) throw new Error(`${left} does not survive the fixed-width form`)
      const a = parseEventId(left)
      const b = parseEventId(right)
      if (!a || !b) throw new Error('unparsed')
      const byTuple = sign(a.ms - b.ms || a.seq - b.seq)
      const lexLeft = lexEventId(left)
      const lexRight = lexEventId(right)
      const byLex = lexLeft < lexRight ? -1 : lexLeft > lexRight ? 1 : 0
      if (sign(compareEventIds(left, right)) !== byTuple) throw new Error(`compare(${left}, ${right})`)
      if (byLex !== byTuple) throw new Error(`the fixed-width forms of ${left} and ${right} sort otherwise (ZRANGEBYLEX would be wrong)`)
      if (sign(compareEventIds(right, left)) !== -byTuple) throw new Error('not antisymmetric')
    }),
    { numRuns: 2000 }
  )
  t.pass('2000 random pairs')
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
