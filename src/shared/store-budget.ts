import { HttpError } from '../errors.js'
import type { Log } from '../logger.js'
import { OutageLog } from './outage-log.js'
import { timedCall, type CallMetrics } from './timed-call.js'

/** How long a request waits for one call to a store over the network (Redis) before it answers 503. */
export const REQUEST_STORE_BUDGET_MS = 1000

/**
 * The calls a request makes to one store (Redis), each bounded by a budget: timed and counted by
 * operation, an outage logged once, and a call that fails or misses the budget answered 503 with
 * `Retry-After: 1`: our store's trouble is never a 500, and a hung Redis never hangs a request.
 */
export class StoreBudget {
  private readonly outage: OutageLog

  constructor(
    /** The store as a client reads it in the 503 (`ticket store`). */
    private readonly name: string,
    private readonly metrics: CallMetrics,
    log: Log,
    private readonly timeoutMs = REQUEST_STORE_BUDGET_MS
  ) {
    this.outage = new OutageLog(log, { down: `${name} unavailable`, up: `${name} available again` })
  }

  async call<T>(op: string, call: () => Promise<T>): Promise<T> {
    try {
      const result = await timedCall(this.metrics, op, this.timeoutMs, call)
      this.outage.up()
      return result
    } catch (err) {
      this.outage.down(err)
      throw new HttpError(503, `${this.name} unavailable, retry shortly`, { 'Retry-After': '1' })
    }
  }
}
