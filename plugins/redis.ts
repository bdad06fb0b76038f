import fp from 'fastify-plugin'
import { RedisConnections, type RedisClient } from '../src/redis/client.js'
import { createKeys, type Keys } from '../src/redis/keys.js'
import { RedisSubscriber } from '../src/redis/subscriber.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The shared connection for stores, or null when no Redis is configured (memory stores). */
    redis: RedisClient | null
    /** A new connection for blocking reads (XREADGROUP, XREAD BLOCK); closed with the app. */
    redisConnection(name: string): RedisClient
    /** This replica's sharded pub/sub connection, shared by every listener; null without Redis. */
    redisSubscriber: RedisSubscriber | null
    keys: Keys
  }
}

/** Redis for buckets, queue, history, tickets and fan-out; memory stores when none is configured. */
export default fp(
  async (app) => {
    const { REDIS_URL, REDIS_CLUSTER_NODES, REDIS_SENTINELS, REDIS_SENTINEL_NAME, KEY_PREFIX } = app.config
    app.decorate('keys', createKeys(KEY_PREFIX))
    if (!REDIS_URL && !REDIS_CLUSTER_NODES && !REDIS_SENTINELS) {
      app.log.warn('REDIS_URL is not set: buckets, queue and history live in this process and serve one replica only')
      app.decorate<RedisClient | null>('redis', null)
      app.decorate('redisConnection', () => {
        throw new Error('redisConnection called without Redis configured')
      })
      app.decorate<RedisSubscriber | null>('redisSubscriber', null)
      return
    }
    const sentinel = REDIS_SENTINELS && REDIS_SENTINEL_NAME
      ? { sentinels: REDIS_SENTINELS, name: REDIS_SENTINEL_NAME, password: app.config.REDIS_SENTINEL_PASSWORD }
      : undefined
    const connections = new RedisConnections({ url: REDIS_URL, clusterNodes: REDIS_CLUSTER_NODES, sentinel }, app.log)
    app.decorate<RedisClient | null>('redis', connections.main)
    app.decorate('redisConnection', (name: string) => connections.connect(name))
    const subscriber = new RedisSubscriber(connections.connect('subscriber', { subscriber: true }), (err) =>
      app.log.warn({ err }, 'unreadable pub/sub message dropped')
    )
    app.decorate<RedisSubscriber | null>('redisSubscriber', subscriber)
    await connections.ready()
    app.readiness.add('redis', () => connections.check())
    app.addHook('onReady', async () => connections.pipelineAutomatically())
    app.addHook('onClose', async () => connections.close())
  },
  { name: 'redis', decorators: { fastify: ['config'] }, dependencies: ['health'] }
)
