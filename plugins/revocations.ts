import fp from 'fastify-plugin'
import { MemoryRevocationStore, RedisRevocationStore, Revocations } from '../src/admin/revocations.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Revoked users and agents (src/admin/revocations.ts): `revoke`, `isRevoked`, `onRevoke`. */
    revocations: Pick<Revocations, 'revoke' | 'isRevoked' | 'onRevoke'>
  }
}

/** Revocations kept in Redis for REVOCATION_TTL_S, known in memory by every replica. */
export default fp(
  async (app) => {
    const revocations = new Revocations(
      {
        store: app.redis ? new RedisRevocationStore(app.redis, app.keys) : new MemoryRevocationStore(),
        broadcast: app.broadcast,
        log: app.log
      },
      { ttlS: app.config.REVOCATION_TTL_S }
    )
    await revocations.start()
    app.decorate('revocations', revocations)
    app.addHook('onClose', () => revocations.close())
  },
  { name: 'revocations', dependencies: ['redis', 'broadcast'] }
)
