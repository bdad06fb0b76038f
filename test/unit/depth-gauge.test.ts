import t from 'tap'
import { DepthGauge } from '../../src/forward/depth-gauge.js'
import { waitFor } from '../helpers/wait.js'

t.test('full at the high-water mark; room again only below half of it', async (t) => {
  const reported: number[] = []
  const gauge = new DepthGauge(10, (depth) => reported.push(depth))
  gauge.add(9)
  t.notOk(gauge.full())
  gauge.add(1)
  t.ok(gauge.full(), 'full at 10')
  let room = false
  void gauge.waitForRoom().then(() => (room = true))
  gauge.set(6)
  await new Promise((resolve) => setImmediate(resolve))
  t.notOk(gauge.full())
  t.notOk(room, 'below the high mark is not enough: the feed would flap')
  gauge.set(4)
  await new Promise((resolve) => setImmediate(resolve))
  t.ok(room, 'released below half')
  t.same(reported, [9, 10, 6, 4], 'every depth reported to the metric')
})

t.test('polls the depth, keeps the last value when a read fails, and close lets waiters go', async (t) => {
  const gauge = new DepthGauge(10, () => {})
  const answers: (number | Error)[] = [12, new Error('queue unreachable')]
  let reads = 0
  gauge.poll(async () => {
    const answer = answers[Math.min(reads++, answers.length - 1)]
    if (answer instanceof Error) throw answer
    return answer
  }, 5)
  t.teardown(() => gauge.close())
  await waitFor('three reads', () => reads >= 3)
  t.ok(gauge.full(), 'the polled depth counts; failed reads keep it')
  const waiting = gauge.waitForRoom()
  gauge.close()
  await waiting
  t.pass('closing releases the feed')
})
