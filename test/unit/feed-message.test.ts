import t from 'tap'
import { parseFeedMessage } from '../../src/feed/feed-message.js'

const MAX = 1024
const rating = { user_id: 'u1', item_id: 'i1', timestamp: 1721234567, rating: 4.7 }
const parse = (value: string, isBinary = false) => parseFeedMessage(Buffer.from(value), isBinary, MAX)

t.test('one rating object, with or without agent_id', async (t) => {
  t.same(parse(JSON.stringify(rating)), { ratings: [rating], invalid: [], moreInvalid: 0 })
  const charged = { ...rating, agent_id: 'a1' }
  t.same(parse(JSON.stringify(charged)).ratings, [charged])
})

t.test('an array keeps its valid ratings around invalid neighbours, in order', async (t) => {
  const second = { ...rating, item_id: 'i2' }
  const result = parse(JSON.stringify([rating, { ...rating, rating: 9 }, 'x', second, { ...rating, extra: 1 }]))
  t.same(result.ratings, [rating, second])
  t.same(
    result.invalid.map((invalid) => invalid.reason),
    ['schema', 'schema', 'schema']
  )
  t.match(result.invalid[0].detail, /\/rating/)
  t.match(result.invalid[2].detail, /extra is not allowed/)
})

t.test('schema violations name the field', async (t) => {
  const cases: [unknown, RegExp][] = [
    [{ ...rating, user_id: '' }, /\/user_id/],
    [{ ...rating, user_id: 'u'.repeat(129) }, /\/user_id/],
    [{ ...rating, item_id: 5 }, /\/item_id/],
    [{ ...rating, timestamp: 1.5 }, /\/timestamp/],
    [{ ...rating, timestamp: '1721234567' }, /\/timestamp/],
    [{ ...rating, rating: -0.1 }, /\/rating/],
    [{ user_id: 'u1', item_id: 'i1', rating: 1 }, /timestamp/],
    [42, /object/],
    [null, /object/]
  ]
  for (const [value, detail] of cases) {
    const result = parse(JSON.stringify(value))
    t.same(result.ratings, [], JSON.stringify(value))
    t.equal(result.invalid[0].reason, 'schema')
    t.match(result.invalid[0].detail, detail)
  }
})

t.test('garbage messages are rejected with a reason, never thrown', async (t) => {
  t.same(parse('{"user_id":').invalid, [{ reason: 'json', detail: 'not JSON' }])
  t.equal(parse('').invalid[0].reason, 'empty')
  t.equal(parse('  \n').invalid[0].reason, 'empty')
  t.equal(parse('[]').invalid[0].reason, 'empty')
  t.equal(parse(JSON.stringify(rating), true).invalid[0].reason, 'binary')
  const big = JSON.stringify([rating, { ...rating, item_id: 'x'.repeat(MAX) }])
  t.same(parse(big).ratings, [], 'an oversized message is skipped as a whole')
  t.equal(parse(big).invalid[0].reason, 'too_large')
})

t.test('defect 17: a feed rating with a timestamp or rating out of bounds is skipped, naming the field', async (t) => {
  const cases: [string, RegExp][] = [
    ['{"user_id":"u1","item_id":"i1","timestamp":1e300,"rating":1}', /\/timestamp/],
    ['{"user_id":"u1","item_id":"i1","timestamp":4102444801,"rating":1}', /\/timestamp/],
    ['{"user_id":"u1","item_id":"i1","timestamp":-5,"rating":1}', /\/timestamp/],
    ['{"user_id":"u1","item_id":"i1","timestamp":1,"rating":1e400}', /\/rating/]
  ]
  for (const [text, field] of cases) {
    const result = parse(text)
    t.same(result.ratings, [], text)
    t.match(result.invalid[0]?.detail, field, text)
  }
  t.same(parse('{"user_id":"u1","item_id":"i1","timestamp":4102444800,"rating":0}').ratings.length, 1, 'the bounds themselves are valid')
})

t.test('defect 12: one message of 262k invalid items is counted whole, and only the first few are described', async (t) => {
  const items = 262_144
  const message = Buffer.from(`[${'0,'.repeat(items - 1)}0]`)
  const { ratings, invalid, moreInvalid } = parseFeedMessage(message, false, message.byteLength)
  t.same(ratings, [])
  t.ok(invalid.length >= 1 && invalid.length <= 3, `${invalid.length} descriptions built, a bounded number`)
  t.equal(invalid.length + moreInvalid, items, 'every invalid item is counted')
  t.match(invalid[0], { reason: 'schema', detail: /object/ })

  const mixed = parse(JSON.stringify([rating, 1, 2, 3, 4, 5, { ...rating, item_id: 'i2' }]))
  t.equal(mixed.ratings.length, 2, 'valid ratings after the described ones are still kept')
  t.equal(mixed.invalid.length + mixed.moreInvalid, 5)
})
