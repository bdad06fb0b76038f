import { HttpError } from '../errors.js'
import type { Log } from '../logger.js'
import { OutageLog } from '../shared/outage-log.js'
import { timedCall, type CallMetrics } from '../shared/timed-call.js'
import { isExpired, type Principal } from './credentials.js'
import type { TicketStore } from './ticket-store.js'

/** A hung Redis must not hang the ticket route or the stream's opening. */
const STORE_TIMEOUT_MS = 1000

export interface TicketsOptions {
  /** Seconds a ticket stays redeemable (TICKET_TTL_S). */
  ttlS: number
  /** Seconds of clock skew forgiven on the caller's token expiry (JWT_CLOCK_TOLERANCE_S). */
  clockToleranceS: number
  /** Given for a store over the network (Redis): its calls are timed, counted and bounded by STORE_TIMEOUT_MS. */
  metrics?: CallMetrics
  log: Log
  /** Wall-clock milliseconds (token expiries are wall-clock). */
  clock?: () => number
}

/**
 * Single-use tickets for `?ticket=` on the SSE stream, over a ticket store: a ticket never
 * outlives the token it was issued for, and a store that fails or hangs is a 503, not a 500.
 */
export class Tickets {
  private readonly outage: OutageLog

  constructor(
    private readonly store: TicketStore,
    private readonly options: TicketsOptions
  ) {
    this.outage = new OutageLog(options.log, { down: 'ticket store unavailable', up: 'ticket store available again' })
  }

  /** A single-use ticket bound to the principal. */
  async issue(principal: Principal): Promise<{ ticket: string; expiresIn: number }> {
    const expiresIn = this.options.ttlS
    const ticket = await this.call('ticket_issue', () => this.store.issue(principal, expiresIn))
    return { ticket, expiresIn }
  }

  /** The principal once; null for an unknown, used or expired ticket, or an expired token. */
  async redeem(ticket: string): Promise<Principal | null> {
    const principal = await this.call('ticket_redeem', () => this.store.redeem(ticket))
    const { clock = Date.now, clockToleranceS } = this.options
    return principal && !isExpired(principal, Math.floor(clock() / 1000), clockToleranceS) ? principal : null
  }

  close(): void {
    this.store.close()
  }

  private async call<T>(op: string, call: () => Promise<T>): Promise<T> {
    const { metrics } = this.options
    if (!metrics) return call()
    try {
      const result = await timedCall(metrics, op, STORE_TIMEOUT_MS, call)
      this.outage.up()
      return result
    } catch (err) {
      this.outage.down(err)
      throw new HttpError(503, 'ticket store unavailable, retry shortly', { 'Retry-After': '1' })
    }
  }
}
