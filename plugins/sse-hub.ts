import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import { ConflatingBuffer } from '../src/sse/conflation.js'
import { compareEventIds } from '../src/events/event-id.js'
import { retryAfterSeconds, take, type BucketState } from '../src/limits/token-bucket.js'
import { HttpError } from '../src/errors.js'
import { limitsOf } from '../src/limits/policies.js'
import { MemoryStreamSlots, RedisStreamSlots } from '../src/sse/stream-slots.js'
import type { Principal } from '../src/auth/credentials.js'
import type { StoredEvent } from './events.js'

export interface StreamOptions {
  /** Only these items (the `items=` query); null: every item. */
  items: string[] | null
  /** Resume after this id (Last-Event-ID header or `lastEventId` query). */
  lastEventId: string | null
}

declare module 'fastify' {
  interface FastifyInstance {
    sseHub: {
      /** Opens the caller's stream on `reply` (429 over the agent's cap, 503 while draining). */
      open(request: FastifyRequest, reply: FastifyReply, options: StreamOptions): Promise<void>
    }
  }
}

type CloseReason = 'client' | 'slow_consumer' | 'expired' | 'drain'

/**
 * Delivery buckets live in this process, one per agent shared by that agent's streams here:
 * asking Redis once per event per stream would cost more than sending the event. Across
 * replicas an agent can receive up to (replicas x policy), which only bounds a browser's load.
 */
interface AgentDelivery {
  state?: BucketState
  streams: number
}

const ALL_SCOPE = 'ratings:all'
/** Longest setTimeout Node accepts. */
const MAX_TIMER_MS = 2 ** 31 - 1
const EXPIRED_DATA = JSON.stringify({ reason: 'token expired' })

/**
 * An event's SSE message and conflation key, made once per event and shared by every stream
 * it goes to (the same StoredEvent object reaches every listener). JSON has no raw newline,
 * so the data is one line.
 */
const messages = new WeakMap<StoredEvent, string>()
function message(e: StoredEvent): string {
  let text = messages.get(e)
  if (text === undefined) {
    text = `id: ${e.id}\ndata: ${JSON.stringify(e.event)}\n\n`
    messages.set(e, text)
  }
  return text
}
const conflationKeys = new WeakMap<StoredEvent, string>()
function conflationKey(e: StoredEvent): string {
  let key = conflationKeys.get(e)
  if (key === undefined) {
    key = `${e.event.user_id}\u0000${e.event.item_id}`
    conflationKeys.set(e, key)
  }
  return key
}

export default fp(
  async (app) => {
    const c = app.config
    const { metrics } = app
    const slots = app.redis ? new RedisStreamSlots(app.redis, app.keys) : new MemoryStreamSlots()
    // Policies are loaded once at startup: the bucket's shape is made once, not per event.
    const delivery = limitsOf(app.buckets.policy('delivery'))
    // A slot outlives a few missed heartbeats, then frees itself (replica died).
    const slotTtlMs = c.SSE_HEARTBEAT_MS * 3
    const agents = new Map<string, AgentDelivery>()
    const open = new Set<Stream>()
    let draining = false

    class Stream {
      readonly done: Promise<void>
      private readonly buffer = new ConflatingBuffer<StoredEvent>(conflationKey, (e) => message(e).length)
      private lastQueued: string | null = null
      private ending: CloseReason | null = null
      private finished = false
      private heartbeatDue = false
      /** Headers and the first messages are out: the pump may write. */
      private attached = false
      /** The socket asked us to wait (write returned false) and has not drained yet. */
      private blocked = false
      /** A pump is due in this tick's microtasks: events that arrive together leave in one write. */
      private scheduled = false
      /** Pumps again when the agent's delivery bucket has the next token. */
      private retryTimer: NodeJS.Timeout | undefined
      private readonly timers: NodeJS.Timeout[] = []
      private unsubscribe: () => void = () => {}
      private resolveDone: () => void = () => {}
      private readonly agent: AgentDelivery
      private readonly all: boolean

      constructor(
        readonly id: string,
        private readonly principal: Principal,
        private readonly items: Set<string> | null,
        /** The socket only: the Fastify request and reply (and their child logger) can go. */
        private readonly raw: ServerResponse
      ) {
        this.done = new Promise((resolve) => (this.resolveDone = resolve))
        this.all = principal.scopes.includes(ALL_SCOPE)
        this.agent = agents.get(principal.agentId) ?? { streams: 0 }
        agents.set(principal.agentId, this.agent)
        this.agent.streams++
        open.add(this)
        metrics.sseOpen.inc()
      }

      private matches(e: StoredEvent): boolean {
        return (this.all || e.event.user_id === this.principal.sub) && (!this.items || this.items.has(e.event.item_id))
      }

      /**
       * Live first (buffered), then the history, then the buffer minus what the history already
       * gave: no gap and no duplicate at the seam. Returns the gap id, if any.
       */
      async start(lastEventId: string | null): Promise<string | undefined> {
        const early: StoredEvent[] = []
        let live = false
        this.unsubscribe = app.events.subscribe((e) => {
          if (!this.matches(e)) return
          if (live) this.enqueue(e)
          else early.push(e)
        }, this.all ? null : this.principal.sub)
        let gap: string | undefined
        if (lastEventId) {
          const replay = await app.events.replay(this.all ? null : this.principal.sub, lastEventId)
          gap = replay.gap
          this.lastQueued = lastEventId
          for (const e of replay.events) if (this.matches(e)) this.enqueue(e)
        }
        for (const e of early) this.enqueue(e)
        live = true
        return gap
      }

      /** Sends the SSE headers, then writes straight to the socket (README: why no SSE plugin). */
      attach(gap: string | undefined, reply: FastifyReply): void {
        const raw = this.raw
        if (raw.destroyed) return this.finish('client') // gone while the history was read
        raw.on('close', () => this.finish(this.ending ?? 'client'))
        raw.on('drain', () => {
          this.blocked = false
          this.pump()
        })
        const beat = setInterval(() => {
          this.heartbeatDue = true
          this.schedule()
          this.checkSlow()
          slots.refresh(this.principal.agentId, this.id, slotTtlMs).catch(() => {
            /* a missed refresh only shortens the slot's life */
          })
        }, c.SSE_HEARTBEAT_MS)
        this.timers.push(beat)
        const exp = this.principal.exp
        if (exp !== undefined) {
          const ms = Math.min(MAX_TIMER_MS, Math.max(0, exp * 1000 - Date.now()))
          this.timers.push(setTimeout(() => this.end('expired'), ms))
        }
        for (const timer of this.timers) timer.unref()
        void reply.hijack()
        for (const [name, value] of Object.entries(reply.getHeaders())) raw.setHeader(name, value ?? '')
        raw.setHeader('Content-Type', 'text/event-stream; charset=utf-8')
        raw.setHeader('Connection', 'keep-alive')
        raw.setHeader('Cache-Control', 'no-cache,no-transform')
        raw.setHeader('x-no-compression', 1)
        raw.statusCode = 200
        this.attached = true
        this.write(`retry: ${c.SSE_RETRY_MS}\n\n${gap ? `event: gap\ndata: ${gap}\n\n` : ''}`)
        this.pump()
      }

      private enqueue(e: StoredEvent): void {
        if (this.lastQueued && compareEventIds(e.id, this.lastQueued) <= 0) return
        this.lastQueued = e.id
        if (this.buffer.push(e)) metrics.sseConflated.inc()
        this.checkSlow()
        this.schedule()
      }

      /** The socket stopped taking data and the unsent data passed the bound: close it. */
      private checkSlow(): void {
        const unsent = this.raw.writableLength + this.buffer.size
        if (!this.blocked || this.finished || unsent <= c.SSE_MAX_UNSENT_BYTES) return
        this.cut('slow_consumer')
      }

      /** Ends the stream after its last message (expired event or retry hint). */
      end(reason: CloseReason): void {
        if (this.ending || this.finished) return
        this.ending = reason
        this.schedule()
        // A socket that does not take the last message is cut.
        const timer = setTimeout(() => this.cut(reason), 2000)
        timer.unref()
        this.timers.push(timer)
      }

      /** Closes the socket now, whatever it still holds. */
      cut(reason: CloseReason): void {
        this.ending ??= reason
        this.raw.destroy()
      }

      private schedule(): void {
        if (this.scheduled) return
        this.scheduled = true
        queueMicrotask(() => {
          this.scheduled = false
          this.pump()
        })
      }

      /**
       * Delivery order: heartbeats, then events as fast as the agent's delivery bucket allows,
       * all that is ready in one write; nothing while the socket is backed up (the buffer conflates).
       */
      private pump(): void {
        const raw = this.raw
        if (!this.attached || this.finished || this.blocked || raw.writableEnded || raw.destroyed) return
        let chunk = ''
        if (this.heartbeatDue && !this.ending) {
          this.heartbeatDue = false
          chunk += ': heartbeat\n\n'
        }
        let sent = 0
        while (!this.ending && this.buffer.length > 0) {
          const decision = take(this.agent.state, delivery, performance.now())
          if (!decision.allowed) {
            this.retryTimer ??= setTimeout(() => {
              this.retryTimer = undefined
              this.pump()
            }, decision.retryAfterMs)
            break
          }
          this.agent.state = decision.state
          const next = this.buffer.shift()
          if (!next) break
          sent++
          chunk += message(next)
        }
        if (sent) metrics.sseEventsSent.inc(sent)
        if (this.ending === 'expired') chunk += `event: expired\ndata: ${EXPIRED_DATA}\n\n`
        if (this.ending === 'drain') chunk += `retry: ${c.SSE_RETRY_MS}\n\n`
        if (chunk) this.write(chunk)
        if (this.ending) raw.end()
      }

      private write(chunk: string): void {
        if (!this.raw.write(chunk)) this.blocked = true
      }

      /** Releases everything; `reason` null: the stream never opened (nothing to count as closed). */
      finish(reason: CloseReason | null): void {
        if (this.finished) return
        this.finished = true
        this.ending = reason ?? 'client'
        for (const timer of this.timers) clearTimeout(timer)
        clearTimeout(this.retryTimer)
        this.unsubscribe()
        if (--this.agent.streams === 0) agents.delete(this.principal.agentId)
        slots.release(this.principal.agentId, this.id).catch(() => {
          /* the slot expires by itself */
        })
        open.delete(this)
        metrics.sseOpen.dec()
        if (reason) metrics.sseClosed.inc({ reason })
        this.resolveDone()
      }
    }

    app.decorate('sseHub', {
      async open(request: FastifyRequest, reply: FastifyReply, options: StreamOptions) {
        if (draining) {
          metrics.sseRefused.inc({ reason: 'draining' })
          throw new HttpError(503, 'shutting down: reconnect to another replica', { 'Retry-After': '1' })
        }
        const principal = request.principal
        const cap = c.SSE_MAX_STREAMS_PER_AGENT
        const id = randomUUID()
        const slot = await slots.acquire(principal.agentId, id, cap, slotTtlMs).catch((err: Error) => {
          // The cap is a safety bound: a Redis outage must not take every stream down with it.
          request.log.warn({ err: err.message }, 'stream cap unavailable: stream admitted')
          return { acquired: true, retryAfterMs: 0 }
        })
        if (!slot.acquired) {
          metrics.sseRefused.inc({ reason: 'cap' })
          const retryAfter = String(retryAfterSeconds(slot.retryAfterMs))
          throw new HttpError(429, `agent already has ${cap} open streams`, { 'Retry-After': retryAfter })
        }
        const stream = new Stream(id, principal, options.items ? new Set(options.items) : null, reply.raw)
        let gap: string | undefined
        try {
          gap = await stream.start(options.lastEventId)
        } catch (err) {
          stream.finish(null)
          request.log.warn({ err: (err as Error).message }, 'history unavailable')
          throw new HttpError(503, 'history unavailable, retry shortly', { 'Retry-After': '1' })
        }
        stream.attach(gap, reply)
      }
    })

    // Shutdown: refuse new streams, then close open ones spread over DRAIN_MS, each told to
    // retry, so the clients do not reconnect to the other replicas as one herd.
    app.addHook('preClose', async () => {
      draining = true
      const streams = [...open]
      const step = streams.length > 1 ? c.DRAIN_MS / (streams.length - 1) : 0
      const timers = streams.map((s, i) => setTimeout(() => s.end('drain'), i * step))
      let bound: NodeJS.Timeout | undefined
      await Promise.race([
        Promise.all(streams.map((s) => s.done)),
        new Promise((resolve) => (bound = setTimeout(resolve, c.DRAIN_MS + 3000)))
      ])
      clearTimeout(bound)
      for (const timer of timers) clearTimeout(timer)
      for (const s of open) s.cut('drain')
    })
  },
  { name: 'sse-hub', dependencies: ['metrics', 'events', 'buckets', 'auth', 'redis'] }
)
