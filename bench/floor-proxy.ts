/**
 * The floor of POST /v1/rating under the contract, with moltbridge's own libraries and Redis
 * scripts: the bare Fastify proxy plus what SPEC §3 makes every rating do, and nothing else —
 * verify the JWT (cached per token, as the gateway does), one bucket script, the OpenClaw call,
 * one publish script (history, latest score, live channel). No hooks, metrics, logs, headers,
 * schema or error mapping. The gateway is compared with it to show what the contract itself costs.
 */
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { jwtVerify, type JWTPayload } from 'jose'
import { Pool } from 'undici'
import { RedisEventStore } from '../src/events/redis-event-store.js'
import { RedisBucketStore } from '../src/limits/bucket-store.js'
import { DEFAULT_POLICY } from '../src/limits/policies.js'
import { createMetrics } from '../src/metrics.js'
import type { ScoreEvent } from '../src/rating.js'
import { createKeys } from '../src/redis/keys.js'
import { RedisSubscriber } from '../src/redis/subscriber.js'

export interface FloorOptions {
  openclawUrl: string
  apiKey: string
  redisUrl: string
  prefix: string
  jwtSecret: string
}

export async function floorProxy({ openclawUrl, apiKey, redisUrl, prefix, jwtSecret }: FloorOptions) {
  const redis = new Redis(redisUrl, { enableAutoPipelining: true })
  const subscriber = new Redis(redisUrl)
  const keys = createKeys(prefix)
  const buckets = new RedisBucketStore(redis, keys)
  const events = new RedisEventStore(redis, keys, {
    historyMax: 1000,
    historyTtlS: 600,
    scoresTtlS: 600,
    allMax: 100_000,
    allPartitions: 16,
    subscriber: new RedisSubscriber(subscriber, () => {}),
    metrics: createMetrics()
  })
  const policy = { ...DEFAULT_POLICY, capacity: 1_000_000, refill_rate: 1_000_000 }
  const secret = new TextEncoder().encode(jwtSecret)
  const verified = new Map<string, JWTPayload>()
  const pool = new Pool(openclawUrl, { connections: 32 })
  const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' }

  const app = Fastify()
  app.post('/v1/rating', async (request, reply) => {
    const token = request.headers.authorization?.slice('Bearer '.length) ?? ''
    let claims = verified.get(token)
    if (!claims) verified.set(token, (claims = (await jwtVerify(token, secret, { algorithms: ['HS256'] })).payload))
    const decision = await buckets.take(String(claims.agent_id), 'rest', policy)
    if (!decision.allowed) return reply.code(429).send()
    const res = await pool.request({ path: '/v1/rating', method: 'POST', headers, body: JSON.stringify(request.body) })
    const score = (await res.body.json()) as ScoreEvent
    await events.publish(score)
    return score
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  return {
    url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
    close: async () => {
      await app.close()
      await pool.close()
      redis.disconnect()
      subscriber.disconnect()
    }
  }
}
