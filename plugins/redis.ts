import fp from 'fastify-plugin'
import { Cluster, Redis, type RedisOptions } from 'ioredis'
import { createKeys, type Keys } from '../src/stores/keys.js'

export type RedisClient = Redis | Cluster

declare module 'fastify' {
  interface FastifyInstance {
    /** The shared connection for stores, or null when no Redis is configured (memory stores). */
    redis: RedisClient | null
    /** A new connection for blocking reads (XREADGROUP, XREAD BLOCK); closed with the app. */
    redisConnection(name: string): RedisClient
    keys: Keys
  }
}

/**
 * Redis for buckets, queue, history, tickets and fan-out. Fail fast (no offline queue) so a
 * dead Redis costs a bounded wait, never a growing backlog; reconnect forever in the background.
 */
export default fp(
  async (app) => {
    const { REDIS_URL, REDIS_CLUSTER_NODES, KEY_PREFIX } = app.config
    app.decorate('keys', createKeys(KEY_PREFIX))
    const open: RedisClient[] = []

    const base: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), 1000)
    }

    const create = (name: string): RedisClient => {
      const client: RedisClient = REDIS_CLUSTER_NODES
        ? new Cluster(
            REDIS_CLUSTER_NODES.split(',').map((hp) => {
              const [host, port] = hp.split(':')
              return { host, port: Number(port) }
            }),
            { lazyConnect: true, enableOfflineQueue: false, redisOptions: base, clusterRetryStrategy: base.retryStrategy }
          )
        : new Redis(REDIS_URL as string, { ...base, connectionName: `moltbridge-${name}` })
      let down = false
      client.on('error', (err: Error) => {
        if (down) return // one line per outage, not one per retry
        down = true
        app.log.warn({ redis: name, err: err.message }, 'redis unavailable')
      })
      client.on('ready', () => {
        if (down) app.log.info({ redis: name }, 'redis available again')
        down = false
      })
      client.connect().catch(() => {
        /* reported by the error listener; ioredis keeps retrying */
      })
      open.push(client)
      return client
    }

    const enabled = Boolean(REDIS_URL || REDIS_CLUSTER_NODES)
    const main = enabled ? create('main') : null
    app.decorate<RedisClient | null>('redis', main)
    app.decorate('redisConnection', (name: string) => {
      if (!enabled) throw new Error('redisConnection called without Redis configured')
      return create(name)
    })
    if (main) {
      await new Promise<void>((resolve) => {
        if (main.status === 'ready') return resolve()
        const done = () => {
          main.off('ready', done)
          main.off('error', done)
          resolve()
        }
        main.once('ready', done)
        main.once('error', done)
      })
      app.readiness.add('redis', async () => {
        if (main.status !== 'ready') return `not connected (${main.status})`
        await main.ping()
        return null
      })
      // Commands issued in the same tick leave in one socket write (ioredis autopipelining): the
      // hot paths issue several per request, and a write per command cost ~20% of the CPU. Only
      // once every plugin has defined its scripts: a script defined while an autopipeline is
      // pending is missing from that pipeline, and ioredis then crashes ("results[i] is not
      // iterable"). The blocking connections stay as they are: one command at a time anyway.
      app.addHook('onReady', async () => {
        main.options.enableAutoPipelining = true
      })
    } else {
      app.log.warn('REDIS_URL is not set: buckets, queue and history live in this process and serve one replica only')
    }

    app.addHook('onClose', async () => {
      await Promise.all(open.map((c) => c.quit().catch(() => c.disconnect())))
    })
  },
  { name: 'redis', decorators: { fastify: ['config'] }, dependencies: ['health'] }
)
