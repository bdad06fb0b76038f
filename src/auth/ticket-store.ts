import { LRUCache } from 'lru-cache'
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { RedisClient } from '../redis/client.js'
import type { Keys } from '../redis/keys.js'
import type { Principal } from './credentials.js'

/**
 * Single-use SSE tickets: a random value that stands for a principal for a few seconds, read and
 * then used up on whichever replica the stream lands.
 */
export interface TicketStore {
  /** A new ticket for the principal, valid for `ttlS` seconds. */
  issue(principal: Principal, ttlS: number): Promise<string>
  /** The principal of a ticket still outstanding, else null (unknown, used, expired or malformed). */
  peek(ticket: string): Promise<Principal | null>
  /** Removes the ticket atomically: true for the one caller that removed it. */
  consume(ticket: string): Promise<boolean>
  close(): void
}

/** 32 random bytes, base64url: 43 characters. */
const TICKET_FORMAT = /^[A-Za-z0-9_-]{43}$/
/** How often the memory store drops expired tickets. */
const SWEEP_MS = 5000

function newTicket(): string {
  return randomBytes(32).toString('base64url')
}

/** Both stores keep JSON, so a redeemed principal is a copy in both. */
function parse(json: string | null | undefined): Principal | null {
  return json == null ? null : (JSON.parse(json) as Principal)
}

export interface MemoryTicketStoreOptions {
  /** Outstanding tickets kept; the oldest is dropped beyond it. */
  maxEntries: number
  /** Milliseconds from any monotonic origin. */
  clock?: () => number
}

/** One replica only: at most `maxEntries` (one TTL for all, so the least recently issued goes first). */
export class MemoryTicketStore implements TicketStore {
  private readonly tickets: LRUCache<string, string>
  private readonly timer: NodeJS.Timeout

  constructor({ maxEntries, clock = () => performance.now() }: MemoryTicketStoreOptions) {
    this.tickets = new LRUCache({ max: maxEntries, ttlResolution: 0, perf: { now: clock } })
    this.timer = setInterval(() => this.tickets.purgeStale(), SWEEP_MS).unref()
  }

  async issue(principal: Principal, ttlS: number): Promise<string> {
    const ticket = newTicket()
    this.tickets.set(ticket, JSON.stringify(principal), { ttl: ttlS * 1000 })
    return ticket
  }

  async peek(ticket: string): Promise<Principal | null> {
    return parse(this.tickets.get(ticket))
  }

  async consume(ticket: string): Promise<boolean> {
    return this.tickets.delete(ticket)
  }

  close(): void {
    clearInterval(this.timer)
    this.tickets.clear()
  }
}

/** Shared by every replica: SET with EX (Redis expires it), GET to read, GETDEL to use it up exactly once. */
export class RedisTicketStore implements TicketStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys
  ) {}

  async issue(principal: Principal, ttlS: number): Promise<string> {
    const ticket = newTicket()
    await this.redis.set(this.keys.ticket(ticket), JSON.stringify(principal), 'EX', ttlS)
    return ticket
  }

  async peek(ticket: string): Promise<Principal | null> {
    if (!TICKET_FORMAT.test(ticket)) return null
    return parse(await this.redis.get(this.keys.ticket(ticket)))
  }

  async consume(ticket: string): Promise<boolean> {
    return TICKET_FORMAT.test(ticket) && (await this.redis.getdel(this.keys.ticket(ticket))) !== null
  }

  close(): void {
    /* the connection belongs to the redis plugin */
  }
}
