import t from 'tap'
import { ConflatingBuffer } from '../../src/sse/conflation.js'
import { compareEventIds, lexEventId, nextEventId, parseEventId } from '../../src/events/event-id.js'

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

t.test('event ids compare numerically and sort as fixed-width strings', async (t) => {
  t.ok(compareEventIds('9-0', '10-0') < 0)
  t.ok(compareEventIds('10-2', '10-10') < 0)
  t.equal(compareEventIds('5-1', '5-1'), 0)
  t.ok(lexEventId('9-0') < lexEventId('10-0'))
  t.equal(parseEventId('abc'), null)
  t.equal(parseEventId('1-2-3'), null)
  t.equal(nextEventId(null, 100), '100-0')
  t.equal(nextEventId('100-0', 100), '100-1')
  t.equal(nextEventId('100-4', 99), '100-5', 'a clock step back never reorders ids')
  t.equal(nextEventId('100-4', 101), '101-0')
})
