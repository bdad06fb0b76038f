import t from 'tap'
import { EventBus } from '../../src/events/event-bus.js'
import { START_ID } from '../../src/events/event-id.js'
import type { LiveSink, StoredEvent, Topic } from '../../src/events/event-store.js'
import { MemoryEventStore, type MemoryEventStoreOptions } from '../../src/events/memory-event-store.js'
import { createMetrics } from '../../src/metrics.js'
import { FakeClock, settle } from '../helpers/fake-clock.js'
import { metricValue } from '../helpers/metrics.js'
import { score } from '../helpers/sse.js'

const limits = { historyMax: 3, historyTtlS: 60, scoresTtlS: 120, allMax: 5, allPartitions: 1, maxUsers: 100 }

/**
 * A memory store whose live path can be cut, like a Redis subscriber connection: while `down`,
 * live events are lost; `reconnect()` tells the bus to catch up.
 */
class FlakyLiveStore extends MemoryEventStore {
  down = false
  private sinkOfBus: LiveSink | null = null

  constructor(options: Partial<MemoryEventStoreOptions> = {}) {
    super({ ...limits, ...options })
  }

  override start(sink: LiveSink): void {
    this.sinkOfBus = sink
    super.start({
      event: (topic, stored) => {
        if (!this.down) sink.event(topic, stored)
      },
      resync: (subscribed) => sink.resync(subscribed)
    })
  }

  reconnect(): void {
    this.down = false
    this.sinkOfBus?.resync(Promise.resolve())
  }
}

function testBus(t: { teardown(fn: () => unknown): void }, options: Partial<MemoryEventStoreOptions> = {}) {
  const metrics = createMetrics()
  const errors: unknown[] = []
  const store = new FlakyLiveStore(options)
  const bus = new EventBus(store, {
    published: metrics.published,
    topics: metrics.fanoutTopics,
    recovered: metrics.fanoutRecovered,
    onError: (err) => errors.push(err)
  })
  t.teardown(() => bus.close())
  /** Joins `topic`; the events it hands on land in the returned list. */
  const listen = async (topic: Topic) => {
    const got: StoredEvent[] = []
    const membership = await bus.join(topic, { event: (stored) => got.push(stored), lost: () => got.push({ id: 'lost', event: score('-', '-', 0) }) })
    return { got, membership }
  }
  return { bus, store, metrics, errors, listen }
}

const items = (events: StoredEvent[]) => events.map((stored) => `${stored.event.user_id}/${stored.event.item_id}`)

t.test('a user topic hands on only its user’s events, the ratings:all topic everyone’s, in publish order', async (t) => {
  const { bus, listen } = testBus(t)
  const alice = await listen(bus.userTopic('alice'))
  const [all] = bus.allTopics()
  const everyone = await listen(all)
  t.equal(alice.membership.position, START_ID, 'a user with no history yet: the position before every event')
  await bus.publish(score('alice', 'i1', 1), 'rest')
  await bus.publish(score('bob', 'i1', 2), 'feed')
  await bus.publish(score('alice', 'i2', 3), 'feed')
  await settle()
  t.same(items(alice.got), ['alice/i1', 'alice/i2'])
  t.same(items(everyone.got), ['alice/i1', 'bob/i1', 'alice/i2'])
  const later = await listen(bus.userTopic('alice'))
  t.equal(later.membership.position, alice.got[1].id, 'a later join starts at the newest id')
})

t.test('a topic is listened to while it has a listener; leaving stops delivery', async (t) => {
  const { bus, metrics, listen } = testBus(t)
  const first = await listen(bus.userTopic('alice'))
  const second = await listen(bus.userTopic('alice'))
  t.equal(await metricValue(metrics.fanoutTopics), 1, 'two listeners, one topic')
  first.membership.leave()
  await bus.publish(score('alice', 'i1', 1), 'rest')
  await settle()
  t.same(items(first.got), [], 'left: nothing more')
  t.same(items(second.got), ['alice/i1'])
  second.membership.leave()
  t.equal(await metricValue(metrics.fanoutTopics), 0, 'the last one left: not listened to any more')
})

t.test('after the live path was cut, every topic catches up from its history: each event once, in order', async (t) => {
  const { bus, store, metrics, listen } = testBus(t)
  const alice = await listen(bus.userTopic('alice'))
  const bob = await listen(bus.userTopic('bob'))
  await bus.publish(score('alice', 'a1', 1), 'rest')
  await settle()
  store.down = true
  await bus.publish(score('alice', 'a2', 1), 'rest')
  await bus.publish(score('bob', 'b1', 1), 'rest')
  await settle()
  t.same(items(alice.got), ['alice/a1'], 'lost on the live path')
  store.reconnect()
  await bus.publish(score('alice', 'a3', 1), 'rest') // live while the history is read
  await settle()
  t.same(items(alice.got), ['alice/a1', 'alice/a2', 'alice/a3'], 'the missed one, then the live one, no duplicate')
  t.same(items(bob.got), ['bob/b1'])
  t.ok((await metricValue(metrics.fanoutRecovered)) >= 2, 'the missed ones counted as recovered')
})

t.test('a catch-up that finds the history trimmed past the last id tells the listener it lost events', async (t) => {
  const { bus, store, listen } = testBus(t)
  const alice = await listen(bus.userTopic('alice'))
  store.down = true
  for (const item of ['a1', 'a2', 'a3', 'a4', 'a5']) await bus.publish(score('alice', item, 1), 'rest')
  store.reconnect()
  await settle()
  t.same(items(alice.got), ['-/-', 'alice/a3', 'alice/a4', 'alice/a5'], 'lost first (HISTORY_MAX 3), then what is still held')
})

t.test('publish counts by source; read and latest serve the history', async (t) => {
  const { bus, metrics } = testBus(t)
  const first = await bus.publish(score('alice', 'i1', 1), 'rest')
  await bus.publish(score('alice', 'i1', 4), 'feed')
  const last = await bus.publish(score('alice', 'i2', 2), 'feed')
  t.equal(await metricValue(metrics.published, { source: 'feed' }), 2)
  t.equal(await metricValue(metrics.published, { source: 'rest' }), 1)
  const read = await bus.read(bus.userTopic('alice'), first)
  t.same(items(read.events), ['alice/i1', 'alice/i2'])
  t.equal(read.last, last)
  t.notOk(read.future)
  t.same(await bus.latest('alice', ['i1', 'i2', 'i3']), [score('alice', 'i1', 4), score('alice', 'i2', 2)])
  t.equal(await bus.canary(100), null, 'the memory live path is always through')
})

t.test('a resume point newer than any event is in the future; one older than the history has a gap', async (t) => {
  const { bus } = testBus(t)
  const ids: string[] = []
  for (const item of ['a', 'b', 'c', 'd', 'e']) ids.push(await bus.publish(score('u', item, 1), 'rest'))
  const topic = bus.userTopic('u')
  const [ms, seq] = ids[4].split('-').map(Number)
  t.ok((await bus.read(topic, `${ms}-${seq + 1}`)).future, 'one past the newest')
  t.notOk((await bus.read(topic, ids[4])).future, 'the newest itself')
  t.ok((await bus.read(bus.userTopic('nobody'), `${ms + 1}-0`)).future, 'no history: past the newest id of all')
  const replay = await bus.read(topic, ids[0])
  t.equal(replay.gap, ids[2], 'the oldest id still held (HISTORY_MAX 3)')
  t.same(items(replay.events), ['u/c', 'u/d', 'u/e'])
  t.equal((await bus.read(topic, ids[1])).gap, undefined, 'no gap from the newest id trimmed off')
})

t.test('memory store: ids from the clock, increasing even when it stands still or goes back', async (t) => {
  let wall = 5000
  const clock = new FakeClock()
  clock.wallMs = () => wall
  const { bus } = testBus(t, { clock })
  const ids = [await bus.publish(score('u', 'a', 1), 'rest'), await bus.publish(score('u', 'b', 1), 'rest')]
  wall = 4000
  ids.push(await bus.publish(score('u', 'c', 1), 'rest'))
  wall = 6000
  ids.push(await bus.publish(score('u', 'd', 1), 'rest'))
  t.same(ids, ['5000-0', '5000-1', '5000-2', '6000-0'])
})

t.test('defect 9: the memory store forgets a history after HISTORY_TTL, scores after SCORES_TTL, and keeps at most maxUsers', async (t) => {
  const clock = new FakeClock()
  const { bus } = testBus(t, { clock, maxUsers: 3 })
  const first = await bus.publish(score('ann', 'a', 1), 'rest')
  clock.advance(59_000)
  t.equal((await bus.read(bus.userTopic('ann'), START_ID)).events.length, 1, 'held within HISTORY_TTL')
  clock.advance(1_001)
  t.same((await bus.read(bus.userTopic('ann'), START_ID)).events, [], 'history gone after HISTORY_TTL')
  t.notOk((await bus.read(bus.userTopic('ann'), first)).future, 'its ids are still no future')
  t.same(await bus.latest('ann', ['a']), [score('ann', 'a', 1)], 'the score outlives it (SCORES_TTL 120 s)')
  clock.advance(60_000)
  t.same(await bus.latest('ann', ['a']), [], 'and goes after SCORES_TTL')

  for (const user of ['u1', 'u2', 'u3', 'u4']) await bus.publish(score(user, 'x', 1), 'rest')
  t.same(await bus.latest('u1', ['x']), [], 'the least recently active user went beyond maxUsers')
  t.equal((await bus.latest('u4', ['x'])).length, 1)
})
