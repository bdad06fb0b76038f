import type { Log } from '../logger.js'
import { StoreBudget } from '../shared/store-budget.js'
import type { CallMetrics } from '../shared/timed-call.js'
import { isExpired, type Principal } from './credentials.js'
import type { TicketStore } from './ticket-store.js'

export interface TicketsOptions {
  /** Seconds a ticket stays redeemable (TICKET_TTL_S). */
  ttlS: number
  /** Seconds of clock skew forgiven on the caller's token expiry (JWT_CLOCK_TOLERANCE_S). */
  clockToleranceS: number
  /** Given for a store over the network (Redis): its calls are timed, counted and bounded (503 past the budget). */
  metrics?: CallMetrics
  log: Log
  /** Wall-clock milliseconds (token expiries are wall-clock). */
  clock?: () => number
}

/**
 * Single-use tickets for `?ticket=` on the SSE stream, over a ticket store: a ticket never
 * outlives the token it was issued for, and a store that fails or hangs is a 503, not a 500.
 * A stream reads its ticket first (`peek`) and uses it up (`consume`) only once everything else
 * about the request passed, so a refused request does not burn it.
 */
export class Tickets {
  private readonly budget: StoreBudget | null

  constructor(
    private readonly store: TicketStore,
    private readonly options: TicketsOptions
  ) {
    this.budget = options.metrics ? new StoreBudget('ticket store', options.metrics, options.log) : null
  }

  /** A single-use ticket bound to the principal. */
  async issue(principal: Principal): Promise<{ ticket: string; expiresIn: number }> {
    const expiresIn = this.options.ttlS
    const ticket = await this.call('ticket_issue', () => this.store.issue(principal, expiresIn))
    return { ticket, expiresIn }
  }

  /** The principal of a ticket, without using it up; null for an unknown, used or expired ticket, or an expired token. */
  async peek(ticket: string): Promise<Principal | null> {
    const principal = await this.call('ticket_peek', () => this.store.peek(ticket))
    const { clock = Date.now, clockToleranceS } = this.options
    return principal && !isExpired(principal, Math.floor(clock() / 1000), clockToleranceS) ? principal : null
  }

  /** Uses the ticket up: true for exactly one caller, false once it is gone (used meanwhile, expired). */
  consume(ticket: string): Promise<boolean> {
    return this.call('ticket_consume', () => this.store.consume(ticket))
  }

  close(): void {
    this.store.close()
  }

  private call<T>(op: string, call: () => Promise<T>): Promise<T> {
    return this.budget ? this.budget.call(op, call) : call()
  }
}
