import type { MoltbookSimulator } from '../../src/simulators/moltbook.js'
import type { OpenClawSimulator } from '../../src/simulators/openclaw.js'
import { TEST_SECRET, type Teardown } from './app.js'
import { moltbook } from './moltbook.js'
import { openclawEnv, startTestOpenClaw } from './openclaw.js'
import { buildGateway, startGateways, type GatewayProcess } from './processes.js'
import { startRedisSentinel, type RedisSentinelSet } from './redis-sentinel.js'
import { bucketsFile } from './sse.js'
import { caughtUp, subscribe, type Subscriber } from './subscribers.js'

export interface SentinelPipeline {
  redis: RedisSentinelSet
  feed: MoltbookSimulator
  openclaw: OpenClawSimulator
  gateways: GatewayProcess[]
  /** Each user watched on every gateway: one stream per (user, gateway). */
  subscribers: Subscriber[]
  /** Every rating sent (from `from` on) reached every subscriber of its user. */
  delivered(from?: number): boolean
}

const USERS = ['sn-u1', 'sn-u2', 'sn-u3']
// So many items that no two ratings of a user share one, even in the backlog the feed sends at once
// after a pause: two scores for one item pending together are conflated (SPEC 4), by design.
const ITEMS = Array.from({ length: 100_000 }, (_, i) => `sn-i${i}`)

/**
 * Redis behind three Sentinels, two gateway processes configured through them (REDIS_SENTINELS),
 * the Moltbook and OpenClaw simulators, and SSE subscribers: the whole pipeline, feed not yet flowing.
 */
export async function startSentinelPipeline(t: Teardown, options: { replicas: number; waitReplicas: number }): Promise<SentinelPipeline> {
  await buildGateway()
  const redis = await startRedisSentinel(t, { replicas: options.replicas })
  const openclaw = await startTestOpenClaw(t)
  const feed = await moltbook(t, { users: USERS, items: ITEMS })
  const gateways = await startGateways(t, 2, {
    REDIS_SENTINELS: redis.sentinels,
    REDIS_SENTINEL_NAME: redis.name,
    REDIS_WAIT_REPLICAS: String(options.waitReplicas),
    REDIS_WAIT_TIMEOUT_MS: '500',
    JWT_SECRET: TEST_SECRET,
    MOLTBOOK_URL: feed.url,
    MOLTBOOK_BACKOFF_MAX_MS: '1000',
    ...openclawEnv(openclaw),
    BUCKETS_FILE: await bucketsFile(t, { capacity: 100000, refill_rate: 100000 }),
    QUEUE_CLAIM_MS: '2000',
    SSE_RETRY_MS: '300',
    SSE_HEARTBEAT_MS: '1000'
  })
  const subscribers: Subscriber[] = []
  for (const [i, gw] of gateways.entries()) {
    for (const user of USERS) subscribers.push(await subscribe(t, `${gw.url}/events/personalized-rating`, user, `sn-agent-${i}-${user}`))
  }
  const delivered = (from = 0) => caughtUp(subscribers, feed.sent.slice(from))
  return { redis, feed, openclaw, gateways, subscribers, delivered }
}
