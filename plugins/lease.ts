import fp from 'fastify-plugin'
import { Leader } from '../src/feed/leader.js'
import { MemoryLeaseStore, RedisLeaseStore } from '../src/feed/lease-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Whether this replica reads the feed now (src/feed/leader.ts). */
    lease: Pick<Leader, 'self' | 'isLeader' | 'detail'>
  }
}

/** The ingest lease: the replica holding it reads Moltbook; without Redis this replica always does. */
export default fp(
  async (app) => {
    const store = app.redis ? new RedisLeaseStore(app.redis, app.keys) : new MemoryLeaseStore()
    const leader = new Leader(
      { store, self: app.replicaId, ingest: app.ingest, metrics: app.metrics, log: app.log.child({ lease: 'ingest' }) },
      { ttlMs: app.config.LEASE_MS }
    )
    app.decorate('lease', leader)
    app.readinessDetail('ingest_lease', () => leader.detail())
    app.addHook('onReady', () => leader.start())
    // Hand the feed over as soon as shutdown starts, not after the drain: stop reading, then release.
    app.addHook('preClose', async () => {
      await leader.close()
      await store.close()
    })
  },
  { name: 'lease', dependencies: ['metrics', 'health', 'redis', 'ingest'] }
)
