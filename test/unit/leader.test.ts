import { pino } from 'pino'
import t, { type Test } from 'tap'
import { Leader } from '../../src/feed/leader.js'
import { MemoryLeaseStore, type LeaseStore, type LeaseView } from '../../src/feed/lease-store.js'
import { createMetrics } from '../../src/metrics.js'
import { logCapture } from '../helpers/app.js'
import { FakeClock } from '../helpers/fake-clock.js'
import { metricValue } from '../helpers/metrics.js'
import { waitFor } from '../helpers/wait.js'

const TTL = 300

/** The feed reader as the leader drives it: started on winning the lease, stopped on losing it. */
class IngestStandIn {
  starts = 0
  stops = 0
  get running(): boolean {
    return this.starts > this.stops
  }
  start(): void {
    this.starts++
  }
  async stop(): Promise<void> {
    this.stops++
  }
}

/** A memory lease store whose calls fail while `down` (Redis away). */
class FlakyLeaseStore extends MemoryLeaseStore implements LeaseStore {
  down = false

  override async acquire(owner: string, ttlMs: number): Promise<LeaseView> {
    if (this.down) throw new Error('connect ECONNREFUSED')
    return super.acquire(owner, ttlMs)
  }

  override async renew(owner: string, fence: number, ttlMs: number): Promise<boolean> {
    if (this.down) throw new Error('connect ECONNREFUSED')
    return super.renew(owner, fence, ttlMs)
  }
}

/** A replica named `self` on `store`; `clock` is the replica's own (the store may keep another). */
function replica(t: Test, self: string, store: LeaseStore, clock: FakeClock) {
  const ingest = new IngestStandIn()
  const metrics = createMetrics()
  const logs = logCapture()
  const log = pino({ level: 'info' }, logs.stream)
  const leader = new Leader({ store, self, ingest, metrics, log, clock }, { ttlMs: TTL })
  t.teardown(() => leader.close())
  /** Moves the replica's clock by `ms` and waits until its loop scheduled its next step. */
  const tick = async (ms: number) => {
    clock.advance(ms)
    await waitFor('the next lease step scheduled', () => clock.nextIn() !== null)
  }
  const logged = (message: string) => logs.lines.filter((line) => line.includes(`"msg":"${message}"`))
  return { leader, ingest, metrics, tick, logged }
}

t.test('a free lease is taken and kept: ingest runs, renewals every third of the ttl keep the term', async (t) => {
  const clock = new FakeClock()
  const { leader, ingest, metrics, tick } = replica(t, 'a', new MemoryLeaseStore({ now: clock.now }), clock)
  await leader.start()
  t.ok(leader.isLeader())
  t.ok(ingest.running, 'the leader reads the feed')
  t.equal(await metricValue(metrics.ingestLeader), 1)
  t.same(leader.detail(), { holder: 'a', fence: 1, self: 'a', leader: true })
  t.equal(clock.nextIn(), 100, 'renews every third of the ttl')
  for (let renewal = 0; renewal < 6; renewal++) await tick(100)
  t.same(leader.detail(), { holder: 'a', fence: 1, self: 'a', leader: true }, 'same term after two ttls of renewals')
  t.equal(ingest.starts, 1, 'ingest started once')
})

t.test('a renewal after another replica took a newer term is refused: this one stops reading', async (t) => {
  const redisClock = new FakeClock() // the store's clock: the lease runs out there first
  const store = new MemoryLeaseStore({ now: redisClock.now })
  const clock = new FakeClock()
  const { leader, ingest, metrics, tick, logged } = replica(t, 'a', store, clock)
  await leader.start()
  redisClock.advance(TTL + 100)
  const takeover = await store.acquire('b', TTL)
  t.ok(takeover.acquired && takeover.fence === 2, 'b takes a newer term')

  t.ok(leader.isLeader(), 'a does not know yet')
  await tick(100)
  t.notOk(leader.isLeader(), 'its renewal with fence 1 was refused')
  t.notOk(ingest.running, 'a stopped reading the feed')
  t.equal(await metricValue(metrics.ingestLeader), 0)
  t.match(logged('ingest lease lost: feed reading stopped')[0], 'renewal refused')

  await tick(0)
  t.same(leader.detail(), { holder: 'b', fence: 2, self: 'a', leader: false }, 'a sees who leads now')
  redisClock.advance(TTL + 1)
  await tick(100)
  t.ok(leader.isLeader(), 'a takes the lease back once b stops renewing')
  t.equal(leader.detail().fence, 3, 'in a newer term')
  t.equal(ingest.starts, 2)
})

t.test('the fence decides, not the name: an older term of the same owner name is refused', async (t) => {
  const redisClock = new FakeClock()
  const store = new MemoryLeaseStore({ now: redisClock.now })
  const clock = new FakeClock()
  const old = replica(t, 'a', store, clock)
  await old.leader.start()
  redisClock.advance(TTL + 100)
  // A process that came back under the same name (a fixed replica id) takes the expired lease.
  const restarted = replica(t, 'a', store, new FakeClock())
  await restarted.leader.start()
  t.equal(restarted.leader.detail().fence, 2)

  await old.tick(100)
  t.notOk(old.leader.isLeader(), 'the renewal with fence 1 is refused although the holder name matches')
  t.notOk(old.ingest.running, 'the old term stopped reading')
  t.ok(restarted.leader.isLeader(), 'the new term keeps the lease')
  t.ok(restarted.ingest.running)
})

t.test('a renewal that comes late (a paused process) is not trusted: the lease counts as lost', async (t) => {
  const clock = new FakeClock()
  const { leader, ingest, tick, logged } = replica(t, 'a', new MemoryLeaseStore({ now: clock.now }), clock)
  await leader.start()
  clock.jump(TTL + 50)
  t.notOk(leader.isLeader(), 'not leader the moment its last renewal is older than the ttl')
  await tick(0) // the overdue renewal timer runs now
  t.equal(ingest.stops, 1, 'reading stopped before anything else')
  t.match(logged('ingest lease lost: feed reading stopped')[0], 'renewal overdue')
  await tick(0)
  t.ok(leader.isLeader(), 'the lease, free again, is taken in a new term')
  t.equal(leader.detail().fence, 2)
  t.equal(ingest.starts, 2)
})

t.test('a lease store that does not answer: the lease is assumed lost, one warning, back when it answers', async (t) => {
  const clock = new FakeClock()
  const store = new FlakyLeaseStore({ now: clock.now })
  const { leader, ingest, tick, logged } = replica(t, 'a', store, clock)
  await leader.start()
  store.down = true
  await tick(100)
  t.notOk(leader.isLeader())
  t.notOk(ingest.running, 'a renewal it cannot confirm stops the reading')
  await tick(100)
  await tick(100)
  t.equal(logged('ingest lease store unreachable').length, 1, 'one warning per outage')
  store.down = false
  await tick(100)
  t.ok(leader.isLeader(), 'leads again once the store answers')
  t.equal(logged('ingest lease store reachable again').length, 1)
})

t.test('close hands the lease over: reading stops, the lease is free at once, no step follows', async (t) => {
  const clock = new FakeClock()
  const store = new MemoryLeaseStore({ now: clock.now })
  const { leader, ingest, logged } = replica(t, 'a', store, clock)
  await leader.start()
  await leader.close()
  t.notOk(ingest.running)
  t.equal(logged('ingest lease handed over: feed reading stopped').length, 1, 'logged as the plan, not a loss')
  t.equal(clock.nextIn(), null, 'no timer left')
  t.ok((await store.acquire('b', TTL)).acquired, 'another replica takes it without waiting for the ttl')
})

t.test('a replica that finds the lease held waits, then takes it just after it runs out', async (t) => {
  const clock = new FakeClock()
  const store = new MemoryLeaseStore({ now: clock.now })
  await store.acquire('a', TTL)
  clock.advance(250)
  const { leader, ingest, tick } = replica(t, 'b', store, clock)
  await leader.start()
  t.notOk(leader.isLeader())
  t.notOk(ingest.running)
  t.equal(clock.nextIn(), 55, 'tries again 5 ms after the holder\'s lease ends, not a full third of the ttl later')
  await tick(55)
  t.ok(leader.isLeader())
})
