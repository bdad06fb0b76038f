import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import type { GatewayProcess } from '../helpers/processes.js'
import { startSentinelPipeline } from '../helpers/sentinel-pipeline.js'
import { checkDelivery, forwardCounts } from '../helpers/subscribers.js'
import { waitFor } from '../helpers/wait.js'

// REDIS_WAIT_REPLICAS of the gateways; `SENTINEL_TEST_WAIT_REPLICAS=0 npx tap <this file>` measures
// the same failover without WAIT.
const WAIT_REPLICAS = Number(process.env.SENTINEL_TEST_WAIT_REPLICAS ?? 1)

const ready = (gw: GatewayProcess) => fetch(`${gw.url}/readyz`).then((r) => r.ok, () => false)

t.test(`SIGKILL of the primary under load (REDIS_WAIT_REPLICAS=${WAIT_REPLICAS}): the gateways follow, no rating lost`, async (t) => {
  const { redis, feed, openclaw, gateways, subscribers, delivered } = await startSentinelPipeline(t, { replicas: 1, waitReplicas: WAIT_REPLICAS })
  feed.setRate(20)
  await waitFor('ratings flow', () => feed.sent.length >= 20 && delivered(), 15_000)

  // Only Redis dies; the feed leader lives on and its socket stays open (or is closed cleanly when
  // it gives the lease up), so the feed keeps flowing through the failover: nothing to pause.
  const oldPrimary = await redis.primaryPort()
  const victim = redis.servers.find((s) => s.port === oldPrimary)
  if (!victim) throw new Error('the primary is not one of ours')
  const sentAtKill = feed.sent.length
  const killedAt = performance.now()
  await victim.kill()

  // /readyz shares one canary result per READY_CANARY_MS, so right after the kill it may still say
  // ready: wait for the promotion first, then for every gateway to be ready on the new primary.
  await waitFor('the Sentinels promote the replica', async () => (await redis.primaryPort().catch(() => oldPrimary)) !== oldPrimary, 30_000)
  await waitFor('every gateway ready on the new primary', async () => (await Promise.all(gateways.map(ready))).every(Boolean), 30_000)
  const followed = performance.now() - killedAt
  t.comment(`gateways ready (Redis commands and fan-out) ${Math.round(followed)} ms after SIGKILL of the primary (down-after ${redis.downAfterMs} ms)`)
  t.ok(followed <= redis.downAfterMs + 10_000, `followed within down-after + 10 s of slack (${Math.round(followed)} ms)`)

  // The dead node comes back (as a supervisor restarts it) and the Sentinels make it a replica of
  // the new primary: until then WAIT 1 has no replica to count, and the feed waits, paused.
  await victim.restart()
  await waitFor('the feed flows again', () => feed.sent.length > sentAtKill + 40 && delivered(sentAtKill + 40), 60_000)
  t.comment(`ratings sent after the kill reach subscribers again ${Math.round(performance.now() - killedAt)} ms after it`)

  feed.setRate(0)
  // Without WAIT a rating the old primary had not replicated may be gone: counted below, not awaited.
  await waitFor('every rating delivered', () => delivered(), 30_000).catch((err: Error) => {
    if (WAIT_REPLICAS > 0) throw err
  })
  await sleep(500) // a late duplicate would show up here

  const { lost, duplicates } = forwardCounts(feed.sent, openclaw.received)
  const twice = checkDelivery(t, subscribers, feed.sent)
  t.comment(`ratings sent ${feed.sent.length}: lost ${lost}, forwarded twice to OpenClaw ${duplicates}, reached a subscriber twice ${twice}`)
  if (WAIT_REPLICAS > 0) t.equal(lost, 0, 'no rating lost')
  t.equal(twice, 0, 'no rating reached a subscriber twice')
})
