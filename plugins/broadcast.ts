import fp from 'fastify-plugin'
import { MemoryBroadcast, RedisBroadcast, type Broadcast } from '../src/admin/broadcast.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Admin changes told to every replica at once (src/admin/broadcast.ts). */
    broadcast: Broadcast
  }
}

/** The admin broadcast channel: Redis pub/sub across replicas, in-process without Redis. */
export default fp(
  async (app) => {
    const broadcast: Broadcast = app.redis
      ? new RedisBroadcast(app.redis, app.keys, { subscriber: app.redisConnection('broadcast'), log: app.log })
      : new MemoryBroadcast()
    app.decorate('broadcast', broadcast)
    app.addHook('onClose', () => broadcast.close())
  },
  { name: 'broadcast', dependencies: ['redis'] }
)
