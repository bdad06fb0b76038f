import t from 'tap'
import { parseItems } from '../../src/events/items.js'

t.test('items= names the items a caller wants, or none', async (t) => {
  t.same(parseItems('a,b, c'), ['a', 'b', 'c'])
  t.same(parseItems('a,,b,'), ['a', 'b'], 'empty parts are dropped')
  t.equal(parseItems(' , '), null, 'nothing named narrows nothing')
  t.equal(parseItems(undefined), null)
})
