import t from 'tap'
import { ConflatingBuffer } from '../../src/sse/conflation.js'
import { compareEventIds, formatPosition, nextEventId, parseEventId, parsePosition } from '../../src/events/event-id.js'

interface Ev {
  id: string
  item: string
  score: number
}

t.test('keeps only the newest value per key, in arrival order of the newest', async (t) => {
  const buffer = new ConflatingBuffer<Ev>((e) => e.item, (e) => e.score)
  t.equal(buffer.push({ id: '1-0', item: 'a', score: 1 }), false)
  t.equal(buffer.push({ id: '2-0', item: 'b', score: 2 }), false)
  t.equal(buffer.push({ id: '3-0', item: 'a', score: 3 }), true, 'a replaced')
  t.equal(buffer.length, 2)
  t.equal(buffer.size, 5)
  t.same(buffer.shift(), { id: '2-0', item: 'b', score: 2 }, 'b first: a moved behind it')
  t.same(buffer.shift(), { id: '3-0', item: 'a', score: 3 })
  t.equal(buffer.shift(), undefined)
  t.equal(buffer.size, 0)
})

t.test('event ids compare numerically', async (t) => {
  t.ok(compareEventIds('9-0', '10-0') < 0)
  t.ok(compareEventIds('10-2', '10-10') < 0)
  t.equal(compareEventIds('5-1', '5-1'), 0)
  t.equal(parseEventId('abc'), null)
  t.equal(parseEventId('1-2-3'), null)
  t.equal(nextEventId(null, 100), '100-0')
  t.equal(nextEventId('100-0', 100), '100-1')
  t.equal(nextEventId('100-4', 99), '100-5', 'a clock step back never reorders ids')
  t.equal(nextEventId('100-4', 101), '101-0')
})

t.test('positions: one event id per topic joined by dots, refused when the count or an id is wrong', async (t) => {
  t.same(parsePosition('5-1', 1), ['5-1'])
  t.same(parsePosition('5-1.0-0.7-3', 3), ['5-1', '0-0', '7-3'])
  t.equal(formatPosition(['5-1', '0-0', '7-3']), '5-1.0-0.7-3')
  t.equal(parsePosition('5-1.0-0', 3), null, 'too few')
  t.equal(parsePosition('5-1', 2), null, 'a user id where a ratings:all position is due')
  t.equal(parsePosition('5-1.x', 2), null, 'not an id')
})
