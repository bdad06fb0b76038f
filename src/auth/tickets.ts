import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { RedisClient } from '../redis/client.js'
import type { Principal } from './credentials.js'
import type { Keys } from '../redis/keys.js'

/**
 * Single-use SSE tickets: a random value that stands for a principal for a few seconds.
 * Redeeming consumes it, on whichever replica the stream lands.
 */
export interface TicketStore {
  /** A new ticket for the principal, valid for `ttlS` seconds. */
  issue(principal: Principal, ttlS: number): Promise<string>
  /** The principal once, then null (also for unknown, expired or malformed tickets). */
  redeem(ticket: string): Promise<Principal | null>
  close(): void
}

/** 32 random bytes, base64url: 43 characters. */
const TICKET_FORMAT = /^[A-Za-z0-9_-]{43}$/

function newTicket(): string {
  return randomBytes(32).toString('base64url')
}

/** Both stores keep JSON, so a redeemed principal is a copy in both. */
function parse(json: string | null): Principal | null {
  return json === null ? null : (JSON.parse(json) as Principal)
}

/** One replica only: a bounded map (oldest dropped first), expired entries swept periodically. */
export function memoryTicketStore(maxEntries: number): TicketStore {
  const tickets = new Map<string, { json: string; expiresAt: number }>()
  const sweep = () => {
    const now = performance.now()
    for (const [ticket, entry] of tickets) if (entry.expiresAt <= now) tickets.delete(ticket)
  }
  const timer = setInterval(sweep, 5000).unref()
  return {
    async issue(principal, ttlS) {
      const ticket = newTicket()
      // Insertion order is expiry order (one TTL for all), so the first entry is the oldest.
      if (tickets.size >= maxEntries) sweep()
      const oldest = tickets.keys().next()
      if (tickets.size >= maxEntries && !oldest.done) tickets.delete(oldest.value)
      tickets.set(ticket, { json: JSON.stringify(principal), expiresAt: performance.now() + ttlS * 1000 })
      return ticket
    },
    async redeem(ticket) {
      const entry = tickets.get(ticket)
      if (!entry) return null
      tickets.delete(ticket)
      return entry.expiresAt > performance.now() ? parse(entry.json) : null
    },
    close: () => clearInterval(timer)
  }
}

/** Shared by every replica: SET with EX (Redis expires it), GETDEL to redeem exactly once. */
export function redisTicketStore(redis: RedisClient, keys: Keys): TicketStore {
  return {
    async issue(principal, ttlS) {
      const ticket = newTicket()
      await redis.set(keys.ticket(ticket), JSON.stringify(principal), 'EX', ttlS)
      return ticket
    },
    async redeem(ticket) {
      if (!TICKET_FORMAT.test(ticket)) return null
      return parse(await redis.getdel(keys.ticket(ticket)))
    },
    close: () => {}
  }
}
