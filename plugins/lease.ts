import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { performance } from 'node:perf_hooks'
import fp from 'fastify-plugin'
import { createMemoryLeaseStore, createRedisLeaseStore } from '../src/feed/lease-store.js'

declare module 'fastify' {
  interface FastifyInstance {
    lease: {
      /** This replica's name as lease owner (host, pid and a random part). */
      readonly self: string
      /** True while this replica holds the ingest lease and its last renewal is younger than LEASE_MS. */
      isLeader(): boolean
      /** The fencing token of this replica's current term; null when it does not lead. */
      fence(): number | null
    }
  }
}

/**
 * The ingest leader lease (SPEC 6): exactly one replica reads Moltbook. Every replica tries to
 * take the lease; the holder renews it every LEASE_MS/3 and runs ingest, the others retry the
 * moment the holder's lease runs out, so a dead holder is replaced within LEASE_MS. Without
 * Redis the store is in memory and this replica always leads.
 */
export default fp(
  async (app) => {
    const ttl = app.config.LEASE_MS
    const every = Math.max(1, Math.floor(ttl / 3))
    const self = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`
    const store = app.redis ? createRedisLeaseStore(app.redis, app.keys) : createMemoryLeaseStore()
    const log = app.log.child({ lease: 'ingest' })

    let fence: number | null = null
    /** When the last successful acquire/renew was sent: the lease is ours until then + ttl at most. */
    let renewedAt = 0
    let seen: { holder: string | null; fence: number | null } = { holder: null, fence: null }
    let timer: NodeJS.Timeout | undefined
    let running: Promise<void> = Promise.resolve()
    let closed = false
    let failing = false

    const isLeader = () => fence !== null && performance.now() - renewedAt < ttl

    const lead = async (token: number, sentAt: number) => {
      fence = token
      renewedAt = sentAt
      seen = { holder: self, fence: token }
      app.metrics.ingestLeader.set(1)
      log.info({ fence: token }, 'ingest lease acquired: this replica reads the feed')
      app.ingest.start()
    }

    const lose = async (reason: string) => {
      if (fence === null) return
      // Handing the lease over on shutdown is the plan, not a problem.
      if (closed) log.info({ fence, reason }, 'ingest lease handed over: feed reading stopped')
      else log.warn({ fence, reason }, 'ingest lease lost: feed reading stopped')
      fence = null
      app.metrics.ingestLeader.set(0)
      await app.ingest.stop()
    }

    /** One step of the loop; resolves to the delay before the next one. */
    const step = async (): Promise<number> => {
      const sentAt = performance.now()
      if (fence !== null) {
        // A timer that fired late (a paused process) must not trust a lease that may have run out.
        if (!isLeader()) {
          await lose('renewal overdue')
          return 0
        }
        if (await store.renew(self, fence, ttl)) {
          renewedAt = sentAt
          return every
        }
        await lose('renewal refused: another replica holds a newer term')
        return 0
      }
      const view = await store.acquire(self, ttl)
      if (view.acquired && view.fence !== null) {
        await lead(view.fence, sentAt)
        return every
      }
      seen = { holder: view.holder, fence: view.fence }
      // Try again just after the holder's lease would run out: takeover within LEASE_MS.
      return Math.min(every, view.ttlMs + 5)
    }

    const run = async () => {
      let delay = every
      try {
        delay = await step()
        if (failing) log.info('ingest lease store reachable again')
        failing = false
      } catch (err) {
        if (!failing) log.warn({ err: (err as Error).message }, 'ingest lease store unreachable')
        failing = true
        // A renewal we cannot confirm is a lease we must assume lost.
        await lose('lease store unreachable').catch((e: Error) => log.error({ err: e.message }, 'ingest stop failed'))
      }
      if (!closed) {
        timer = setTimeout(() => (running = run()), delay)
        timer.unref()
      }
    }

    app.decorate('lease', { self, isLeader, fence: () => (isLeader() ? fence : null) })
    app.readinessDetail('ingest_lease', () => ({ holder: seen.holder, fence: seen.fence, self, leader: isLeader() }))
    app.metrics.ingestLeader.set(0)

    app.addHook('onReady', async () => {
      running = run()
      await running
    })
    // Hand the feed over as soon as shutdown starts, not after the drain: stop reading, then release.
    app.addHook('preClose', async () => {
      closed = true
      clearTimeout(timer)
      await running
      if (fence === null) return
      await lose('shutting down')
      await store.release(self).catch((err: Error) => log.warn({ err: err.message }, 'ingest lease release failed'))
    })
  },
  { name: 'lease', dependencies: ['metrics', 'health', 'redis', 'ingest'] }
)
