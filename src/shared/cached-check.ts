import { systemClock, type Clock } from './clock.js'

/**
 * A check that runs at most once per `reuseMs`: callers within that time share its last result,
 * and concurrent callers share the run in flight. For probes anyone may call as often as they
 * like (an unauthenticated /readyz must not cost a Redis round trip per request).
 */
export class CachedCheck<T> {
  private inFlight: Promise<T> | null = null
  private last: { at: number; result: T } | null = null

  constructor(
    private readonly check: () => Promise<T>,
    private readonly reuseMs: number,
    private readonly clock: Clock = systemClock
  ) {}

  run(): Promise<T> {
    if (this.last && this.clock.now() - this.last.at < this.reuseMs) return Promise.resolve(this.last.result)
    this.inFlight ??= this.check()
      .then((result) => {
        this.last = { at: this.clock.now(), result }
        return result
      })
      .finally(() => (this.inFlight = null))
    return this.inFlight
  }
}
