import t from 'tap'
import { EventBus } from '../../src/events/event-bus.js'
import type { StoredEvent } from '../../src/events/event-store.js'
import { ListenerIndex } from '../../src/events/listener-index.js'
import { MemoryEventStore } from '../../src/events/memory-event-store.js'
import { createMetrics } from '../../src/metrics.js'
import { settle } from '../helpers/fake-clock.js'
import { metricValue } from '../helpers/metrics.js'
import { score } from '../helpers/sse.js'

const limits = { historyMax: 3, historyTtlS: 60, scoresTtlS: 60, streamMax: 5 }

async function testBus(now: () => number = Date.now) {
  const metrics = createMetrics()
  const listenerErrors: unknown[] = []
  const bus = new EventBus(new MemoryEventStore({ ...limits, now }), {
    published: metrics.published,
    onListenerError: (err) => listenerErrors.push(err)
  })
  await bus.start()
  return { bus, metrics, listenerErrors }
}

const items = (events: StoredEvent[]) => events.map((stored) => `${stored.event.user_id}/${stored.event.item_id}`)

t.test('a user listener gets only its user’s events, an every-user listener gets all, in publish order', async (t) => {
  const { bus } = await testBus()
  const alice: StoredEvent[] = []
  const everyone: StoredEvent[] = []
  bus.subscribe((stored) => alice.push(stored), 'alice')
  bus.subscribe((stored) => everyone.push(stored))
  await bus.publish(score('alice', 'i1', 1), 'rest')
  await bus.publish(score('bob', 'i1', 2), 'feed')
  await bus.publish(score('alice', 'i2', 3), 'feed')
  await settle()
  t.same(items(alice), ['alice/i1', 'alice/i2'])
  t.same(items(everyone), ['alice/i1', 'bob/i1', 'alice/i2'])
  t.equal(alice[0], everyone[0], 'every listener gets the same object')
  await bus.close()
})

t.test('unsubscribe stops delivery; the index forgets a user with no listener left', async (t) => {
  const index = new ListenerIndex<string>((err) => {
    throw err
  })
  const got: string[] = []
  const first = index.add((value) => got.push(`first:${value}`), 'alice')
  const second = index.add((value) => got.push(`second:${value}`), 'alice')
  const all = index.add((value) => got.push(`all:${value}`), null)
  index.notify('alice', 'a')
  first()
  index.notify('alice', 'b')
  index.notify('bob', 'c')
  t.same(got, ['all:a', 'first:a', 'second:a', 'all:b', 'second:b', 'all:c'])
  t.notOk(index.empty)
  second()
  all()
  t.ok(index.empty, 'nothing left behind for alice')
  first()
  t.ok(index.empty, 'removing twice is harmless')
})

t.test('a listener that throws does not keep the event from the others', async (t) => {
  const { bus, listenerErrors } = await testBus()
  const got: string[] = []
  bus.subscribe(() => {
    throw new Error('listener bug')
  }, 'alice')
  bus.subscribe((stored) => got.push(stored.id), 'alice')
  const id = await bus.publish(score('alice', 'i1', 1), 'rest')
  await settle()
  t.same(got, [id])
  t.equal(listenerErrors.length, 1)
  t.match(listenerErrors[0], { message: 'listener bug' })
  await bus.close()
})

t.test('publish counts by source; replay and latest read the store', async (t) => {
  const { bus, metrics } = await testBus()
  const first = await bus.publish(score('alice', 'i1', 1), 'rest')
  await bus.publish(score('alice', 'i1', 4), 'feed')
  await bus.publish(score('alice', 'i2', 2), 'feed')
  t.equal(await metricValue(metrics.published, { source: 'feed' }), 2)
  t.equal(await metricValue(metrics.published, { source: 'rest' }), 1)
  t.same(items((await bus.replay('alice', first)).events), ['alice/i1', 'alice/i2'])
  t.same(await bus.latest('alice', ['i1', 'i2', 'i3']), [score('alice', 'i1', 4), score('alice', 'i2', 2)])
  t.equal(await bus.canary(100), null, 'the memory fan-out is always through')
  await bus.close()
})

t.test('after close nothing is delivered', async (t) => {
  const { bus } = await testBus()
  const got: StoredEvent[] = []
  bus.subscribe((stored) => got.push(stored))
  await bus.close()
  await bus.publish(score('alice', 'i1', 1), 'rest').catch(() => {})
  await settle()
  t.same(got, [])
})

t.test('memory store: ids from the injected clock, increasing even when it stands still or goes back', async (t) => {
  let now = 5000
  const { bus } = await testBus(() => now)
  const ids = [await bus.publish(score('u', 'a', 1), 'rest'), await bus.publish(score('u', 'b', 1), 'rest')]
  now = 4000
  ids.push(await bus.publish(score('u', 'c', 1), 'rest'))
  now = 6000
  ids.push(await bus.publish(score('u', 'd', 1), 'rest'))
  t.same(ids, ['5000-0', '5000-1', '5000-2', '6000-0'])
  await bus.close()
})

t.test('memory store: a resume from before the trimmed history starts with a gap', async (t) => {
  const { bus } = await testBus()
  const ids: string[] = []
  for (const item of ['a', 'b', 'c', 'd', 'e']) ids.push(await bus.publish(score('u', item, 1), 'rest'))
  const replay = await bus.replay('u', ids[0])
  t.equal(replay.gap, ids[2], 'the oldest id still held (HISTORY_MAX 3)')
  t.same(items(replay.events), ['u/c', 'u/d', 'u/e'])
  t.equal((await bus.replay('u', ids[2])).gap, undefined, 'no gap from an id still held')
  await bus.close()
})
