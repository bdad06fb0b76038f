import t from 'tap'
import { withTimeout } from '../../src/shared/timeout.js'

t.test('an answer in time passes through, a late one is a rejection', async (t) => {
  t.equal(await withTimeout(Promise.resolve(7), 50), 7)
  await t.rejects(withTimeout(Promise.reject(new Error('redis down')), 50), /redis down/)
  const late = new Promise((resolve) => setTimeout(resolve, 200, 'late'))
  await t.rejects(withTimeout(late, 20), /no answer within 20 ms/)
})
