import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { ask } from '../helpers/redis-sentinel.js'
import { startSentinelPipeline } from '../helpers/sentinel-pipeline.js'
import { forwardCounts, ratingKey } from '../helpers/subscribers.js'
import { waitFor } from '../helpers/wait.js'

/** Connections the gateways hold on the node at `port` (they name theirs `moltbridge-…`). */
const gatewayConnections = (port: number) =>
  ask(port, (c) => c.client('LIST')).then((list) => String(list).split('\n').filter((line) => line.includes(' name=moltbridge-')).length)
const role = (port: number) => ask(port, (c) => c.info('replication')).then((info) => /role:(\w+)/.exec(info)?.[1])

t.test('a switch with the old primary alive (SENTINEL FAILOVER): the gateways leave it before it is demoted', async (t) => {
  const { redis, feed, openclaw, subscribers, delivered } = await startSentinelPipeline(t, { replicas: 1, waitReplicas: 1 })
  feed.setRate(20)
  await waitFor('ratings flow', () => feed.sent.length >= 20 && delivered(), 15_000)

  const oldPrimary = await redis.primaryPort()
  t.ok((await gatewayConnections(oldPrimary)) > 0, 'the gateways are connected to the primary')
  const sentAtSwitch = feed.sent.length
  const started = performance.now()
  await redis.switchPrimary()
  const switched = performance.now() - started
  // Sentinel demotes the old primary seconds later; until then it takes every write sent to it,
  // and discards them when it becomes a replica. The gateways leave on +switch-master.
  await waitFor('no gateway connection left on the old primary', async () => (await gatewayConnections(oldPrimary)) === 0, 10_000)
  const left = performance.now() - started
  t.equal(await role(oldPrimary), 'master', 'left while the old primary still took writes')
  t.comment(`Sentinels named the new primary ${Math.round(switched)} ms after SENTINEL FAILOVER; the gateways had left the old one ${Math.round(left)} ms after it`)

  // WAIT 1 counts a replica again once the old primary replicates the new one.
  await waitFor('the feed flows after the switch', () => feed.sent.length > sentAtSwitch + 40 && delivered(sentAtSwitch + 40), 60_000)
  t.comment(`ratings flow again ${Math.round(performance.now() - started)} ms after SENTINEL FAILOVER`)
  feed.setRate(0)
  const forwarded = () => forwardCounts(feed.sent, openclaw.received).lost === 0
  await waitFor('every rating at OpenClaw', forwarded, 30_000)
  await sleep(500) // a late duplicate or delivery would show up here

  // The writes the old primary took in the switch window (dedup marks, publishes, acks) are gone:
  // what they did may happen twice, or a publish seen by nobody be acknowledged. Counted, not asserted.
  const { duplicates } = forwardCounts(feed.sent, openclaw.received)
  const missed = subscribers.map((s) => feed.sent.filter((r) => r.user_id === s.user && !s.events.some((e) => e.key === ratingKey(r))).length)
  const twice = subscribers.map((s) => s.events.length - new Set(s.events.map((e) => e.key)).size)
  const sum = (list: number[]) => list.reduce((a, b) => a + b, 0)
  t.comment(`ratings sent ${feed.sent.length}: lost 0, forwarded twice to OpenClaw ${duplicates}, missed by a subscriber ${sum(missed)}, reached a subscriber twice ${sum(twice)}`)
})
