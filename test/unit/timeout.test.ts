import t from 'tap'
import { withTimeout } from '../../src/shared/timeout.js'

t.test('an answer in time passes through, a late one is a rejection', async (t) => {
  t.equal(await withTimeout(Promise.resolve(7), 50), 7)
  await t.rejects(withTimeout(Promise.reject(new Error('redis down')), 50), /redis down/)
  const late = new Promise((resolve) => setTimeout(resolve, 200, 'late'))
  await t.rejects(withTimeout(late, 20), /no answer within 20 ms/)
})

t.test('settled hears once how it ended; an answer after the deadline is not reported again', async (t) => {
  const heard: boolean[] = []
  await withTimeout(Promise.resolve(1), 50, (failed) => heard.push(failed))
  await t.rejects(withTimeout(Promise.reject(new Error('down')), 50, (failed) => heard.push(failed)))
  const late = new Promise((resolve) => setTimeout(resolve, 60, 'late'))
  await t.rejects(withTimeout(late, 10, (failed) => heard.push(failed)), /no answer within 10 ms/)
  await late
  t.same(heard, [false, true, true])
})
