import t from 'tap'
import { Heartbeats } from '../../src/sse/heartbeats.js'
import { FakeClock } from '../helpers/fake-clock.js'

const INTERVAL = 1600

/** A member that notes when it was beaten (ms since the test began). */
function member(clock: FakeClock) {
  const start = clock.now()
  const beats: number[] = []
  return { beats, beat: () => void beats.push(clock.now() - start) }
}

t.test('each member beats every interval, counted from when it joined', async (t) => {
  const clock = new FakeClock()
  const heartbeats = new Heartbeats(clock, INTERVAL)
  const first = member(clock)
  heartbeats.add(first)
  clock.advance(INTERVAL / 2)
  const second = member(clock)
  heartbeats.add(second)
  clock.advance(INTERVAL * 2.5)
  t.same(first.beats, [1600, 3200, 4800])
  t.same(second.beats, [1600, 3200], 'from its own start')
})

t.test('members due within a sixteenth of the interval share a wake-up; the others keep their time', async (t) => {
  const clock = new FakeClock()
  const heartbeats = new Heartbeats(clock, INTERVAL)
  const [a, b, c] = [member(clock), member(clock), member(clock)]
  heartbeats.add(a)
  clock.advance(50)
  heartbeats.add(b) // due 50 ms after a: within 100 ms
  clock.advance(100)
  heartbeats.add(c) // due 150 ms after a: not
  clock.advance(INTERVAL - 150)
  t.same(a.beats, [1600])
  t.same(b.beats, [1600], 'b beaten with a, 50 ms early')
  t.same(c.beats, [], 'c not yet')
  clock.advance(150)
  t.same(c.beats, [1750])
})

t.test('a member deleted is not beaten again; with none left no timer is pending', async (t) => {
  const clock = new FakeClock()
  const heartbeats = new Heartbeats(clock, INTERVAL)
  const [a, b] = [member(clock), member(clock)]
  heartbeats.add(a)
  heartbeats.add(b)
  clock.advance(INTERVAL)
  heartbeats.delete(a)
  clock.advance(INTERVAL)
  t.same(a.beats, [1600])
  t.same(b.beats, [1600, 3200])
  heartbeats.delete(b)
  t.equal(clock.nextIn(), null)
})

t.test('a wake-up an interval or more late (a paused process) beats each member once', async (t) => {
  const clock = new FakeClock()
  const heartbeats = new Heartbeats(clock, INTERVAL)
  const a = member(clock)
  heartbeats.add(a)
  clock.jump(5 * INTERVAL)
  clock.advance(0)
  t.same(a.beats, [5 * INTERVAL], 'once, now')
  clock.advance(INTERVAL)
  t.same(a.beats, [5 * INTERVAL, 6 * INTERVAL], 'then every interval from then on')
})
