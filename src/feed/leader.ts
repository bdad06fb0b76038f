import type { Log } from '../logger.js'
import type { Metrics } from '../metrics.js'
import { systemClock, type Cancel, type Clock } from '../shared/clock.js'
import { OutageLog } from '../shared/outage-log.js'
import type { LeaseStore } from './lease-store.js'

export interface LeaderDeps {
  store: LeaseStore
  /** This replica's name as lease owner. */
  self: string
  /** What only the leader runs: reading the feed. */
  ingest: { start(): void; stop(): Promise<void> }
  metrics: Pick<Metrics, 'ingestLeader'>
  log: Log
  clock?: Clock
}

export interface LeaderOptions {
  /** How long a term lasts without renewal: a dead leader is replaced within it. */
  ttlMs: number
}

/** The lease as /readyz shows it. */
export interface LeaseDetail {
  holder: string | null
  fence: number | null
  self: string
  leader: boolean
}

/**
 * The ingest lease, so that exactly one replica reads Moltbook. Every replica tries to take it;
 * the holder renews it every third of its ttl and runs ingest, the others try again the moment
 * the holder's lease runs out, so a dead holder is replaced within the ttl. A renewal carries
 * the term's fencing token: once another replica took a newer term, it is refused and this one
 * stops reading. Without Redis the store is in memory and this replica always leads.
 */
export class Leader {
  /** The fencing token of this replica's current term; null when it does not lead. */
  private fence: number | null = null
  /** When the last successful acquire or renewal was sent: the lease is ours until then + ttl at most. */
  private renewedAt = 0
  private seen: Pick<LeaseDetail, 'holder' | 'fence'> = { holder: null, fence: null }
  private cancelNext: Cancel | undefined
  private running: Promise<void> = Promise.resolve()
  private closed = false
  private readonly clock: Clock
  private readonly renewEveryMs: number
  private readonly outage: OutageLog

  constructor(
    private readonly deps: LeaderDeps,
    private readonly options: LeaderOptions
  ) {
    this.clock = deps.clock ?? systemClock
    this.renewEveryMs = Math.max(1, Math.floor(options.ttlMs / 3))
    this.outage = new OutageLog(deps.log, {
      down: 'ingest lease store unreachable',
      up: 'ingest lease store reachable again'
    })
    deps.metrics.ingestLeader.set(0)
  }

  /** This replica's name as lease owner. */
  get self(): string {
    return this.deps.self
  }

  /** True while this replica holds the lease and its last renewal is younger than the ttl. */
  isLeader(): boolean {
    return this.fence !== null && this.clock.now() - this.renewedAt < this.options.ttlMs
  }

  detail(): LeaseDetail {
    return { ...this.seen, self: this.deps.self, leader: this.isLeader() }
  }

  /** Tries the lease once (resolved then), and keeps trying or renewing until close(). */
  async start(): Promise<void> {
    this.running = this.run()
    await this.running
  }

  /** Hands the feed over: stops trying, stops reading, releases the lease. */
  async close(): Promise<void> {
    this.closed = true
    this.cancelNext?.()
    await this.running
    if (this.fence === null) return
    await this.lose('shutting down')
    await this.deps.store
      .release(this.deps.self)
      .catch((err: Error) => this.deps.log.warn({ err: err.message }, 'ingest lease release failed'))
  }

  private async run(): Promise<void> {
    let delay = this.renewEveryMs
    try {
      delay = await this.step()
      this.outage.up()
    } catch (err) {
      this.outage.down(err)
      // A renewal we cannot confirm is a lease we must assume lost.
      await this.lose('lease store unreachable').catch((stopErr: Error) =>
        this.deps.log.error({ err: stopErr.message }, 'ingest stop failed')
      )
    }
    if (!this.closed) this.cancelNext = this.clock.after(delay, () => (this.running = this.run()))
  }

  /** One try or renewal; resolves to the delay before the next one. */
  private async step(): Promise<number> {
    const { store, self } = this.deps
    const { ttlMs } = this.options
    const sentAt = this.clock.now()
    if (this.fence !== null) {
      // A timer that fired late (a paused process) must not trust a lease that may have run out.
      if (!this.isLeader()) {
        await this.lose('renewal overdue')
        return 0
      }
      if (await store.renew(self, this.fence, ttlMs)) {
        this.renewedAt = sentAt
        return this.renewEveryMs
      }
      await this.lose('renewal refused: another replica holds a newer term')
      return 0
    }
    const view = await store.acquire(self, ttlMs)
    this.seen = { holder: view.holder, fence: view.fence }
    if (view.acquired && view.fence !== null) {
      this.lead(view.fence, sentAt)
      return this.renewEveryMs
    }
    // Try again just after the holder's lease would run out: takeover within the ttl.
    return Math.min(this.renewEveryMs, view.ttlMs + 5)
  }

  private lead(fence: number, sentAt: number): void {
    this.fence = fence
    this.renewedAt = sentAt
    this.deps.metrics.ingestLeader.set(1)
    this.deps.log.info({ fence }, 'ingest lease acquired: this replica reads the feed')
    this.deps.ingest.start()
  }

  private async lose(reason: string): Promise<void> {
    const { fence } = this
    if (fence === null) return
    // Handing the lease over on shutdown is the plan, not a problem.
    if (this.closed) this.deps.log.info({ fence, reason }, 'ingest lease handed over: feed reading stopped')
    else this.deps.log.warn({ fence, reason }, 'ingest lease lost: feed reading stopped')
    this.fence = null
    this.deps.metrics.ingestLeader.set(0)
    await this.deps.ingest.stop()
  }
}
