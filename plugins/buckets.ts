import fp from 'fastify-plugin'
import { MemoryBucketStore, RedisBucketStore } from '../src/limits/bucket-store.js'
import { Limiter } from '../src/limits/limiter.js'
import { MemoryOverrideStore, Overrides, RedisOverrideStore } from '../src/limits/overrides.js'
import { loadPolicies, reloadPolicies, type Action } from '../src/limits/policies.js'
import { chargeBucket } from '../src/limits/route-limit.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** `take(action, agentId)`: one decision, fail mode applied, never throws for Redis; the policies; the overrides. */
    buckets: Pick<Limiter, 'take' | 'policy' | 'effective'> & { overrides: Pick<Overrides, 'set' | 'remove' | 'list'> }
  }
  interface FastifyContextConfig {
    /** Charge the caller's bucket of this action before the handler (429 + RateLimit headers). */
    bucket?: Action
  }
}

/**
 * Token buckets per agent and action: in Redis when configured (shared by replicas), in process
 * memory otherwise; RATE_LIMIT_FAIL_MODE when Redis fails or is slow. Per-agent overrides from
 * the admin API; SIGHUP re-reads BUCKETS_FILE. Only the routes that declare `config.bucket`
 * are charged, by a preHandler of their own.
 */
export default fp(
  async (app) => {
    const { BUCKETS_FILE, RATE_LIMIT_FAIL_MODE: failMode, REDIS_TIMEOUT_MS: timeoutMs } = app.config
    const policies = loadPolicies(BUCKETS_FILE)
    const store = app.redis ? new RedisOverrideStore(app.redis, app.keys) : new MemoryOverrideStore()
    const overrides = new Overrides({ store, broadcast: app.broadcast, log: app.log })
    const limiter = new Limiter({
      policies,
      override: (agentId, action) => overrides.get(agentId, action),
      local: new MemoryBucketStore(),
      shared: app.redis ? { store: new RedisBucketStore(app.redis, app.keys), timeoutMs, failMode } : undefined,
      metrics: app.metrics,
      log: app.log
    })
    overrides.onChange((agentId) => limiter.forget(agentId))
    await overrides.start()
    app.log.info({ policies, store: app.redis ? 'redis' : 'memory (this replica only)', failMode }, 'token buckets ready')
    // Functions, not the instance: callers may pass `app.buckets.take` on by itself.
    app.decorate('buckets', {
      take: (action: Action, agentId: string) => limiter.take(action, agentId),
      policy: (action: Action) => limiter.policy(action),
      effective: (action: Action, agentId: string) => limiter.effective(action, agentId),
      overrides
    })
    const reload = () => reloadPolicies(BUCKETS_FILE, (next) => limiter.setPolicies(next), app.log)
    process.on('SIGHUP', reload)

    // Read once per route as it is added (HEAD twins included), as @fastify/rate-limit does.
    app.addHook('onRoute', (route) => {
      const action = route.config?.bucket
      if (action) route.preHandler = [route.preHandler ?? []].flat().concat(chargeBucket(limiter, action))
    })
    app.addHook('onClose', async () => {
      process.off('SIGHUP', reload)
      limiter.close()
      await overrides.close()
    })
  },
  { name: 'buckets', dependencies: ['metrics', 'redis', 'broadcast'] }
)
