import type { EventMessage, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { FastifySSEPlugin } from 'fastify-sse-v2'
import { randomUUID } from 'node:crypto'
import { ConflatingBuffer } from '../src/domain/conflation.js'
import { compareEventIds } from '../src/domain/event-id.js'
import { take, type BucketState } from '../src/domain/token-bucket.js'
import { HttpError } from '../src/errors.js'
import { MemoryStreamSlots, RedisStreamSlots } from '../src/stores/stream-slots.js'
import type { Principal } from './auth.js'
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

export default fp(
  async (app) => {
    // The retry hint is the stream's own first message (SSE_RETRY_MS), not the plugin's default.
    await app.register(FastifySSEPlugin, { retryDelay: false })
    const c = app.config
    const { metrics } = app
    const slots = app.redis ? new RedisStreamSlots(app.redis, app.keys) : new MemoryStreamSlots()
    // A slot outlives a few missed heartbeats, then frees itself (replica died).
    const slotTtlMs = c.SSE_HEARTBEAT_MS * 3
    const agents = new Map<string, AgentDelivery>()
    const open = new Set<Stream>()
    let draining = false

    class Stream {
      readonly done: Promise<void>
      private readonly buffer = new ConflatingBuffer<StoredEvent>(
        (e) => `${e.event.user_id}\u0000${e.event.item_id}`,
        (e) => e.id.length + JSON.stringify(e.event).length + 16
      )
      private lastQueued: string | null = null
      private ending: CloseReason | null = null
      private finished = false
      private heartbeatDue = false
      /** True while the socket side is asking for the next message. */
      private pulled = true
      private waiter: (() => void) | null = null
      private readonly timers: NodeJS.Timeout[] = []
      private unsubscribe: () => void = () => {}
      private resolveDone: () => void = () => {}
      private readonly agent: AgentDelivery

      constructor(
        readonly id: string,
        private readonly principal: Principal,
        private readonly items: Set<string> | null,
        private readonly reply: FastifyReply
      ) {
        this.done = new Promise((resolve) => (this.resolveDone = resolve))
        this.agent = agents.get(principal.agentId) ?? { streams: 0 }
        agents.set(principal.agentId, this.agent)
        this.agent.streams++
        open.add(this)
        metrics.sseOpen.inc()
      }

      private matches(e: StoredEvent): boolean {
        const all = this.principal.scopes.includes(ALL_SCOPE)
        return (all || e.event.user_id === this.principal.sub) && (!this.items || this.items.has(e.event.item_id))
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
        })
        let gap: string | undefined
        if (lastEventId) {
          const all = this.principal.scopes.includes(ALL_SCOPE)
          const replay = await app.events.replay(all ? null : this.principal.sub, lastEventId)
          gap = replay.gap
          this.lastQueued = lastEventId
          for (const e of replay.events) if (this.matches(e)) this.enqueue(e)
        }
        for (const e of early) this.enqueue(e)
        live = true
        return gap
      }

      attach(gap: string | undefined): void {
        const raw = this.reply.raw
        if (raw.destroyed) return this.finish('client') // gone while the history was read
        raw.on('close', () => this.finish(this.ending ?? 'client'))
        const beat = setInterval(() => {
          this.heartbeatDue = true
          this.wake()
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
        this.reply.sse(this.messages(gap))
      }

      private enqueue(e: StoredEvent): void {
        if (this.lastQueued && compareEventIds(e.id, this.lastQueued) <= 0) return
        this.lastQueued = e.id
        if (this.buffer.push(e)) metrics.sseConflated.inc()
        this.checkSlow()
        this.wake()
      }

      /** The socket stopped asking for data and the unsent data passed the bound: close it. */
      private checkSlow(): void {
        const unsent = this.reply.raw.writableLength + this.buffer.size
        if (this.pulled || this.finished || unsent <= c.SSE_MAX_UNSENT_BYTES) return
        this.cut('slow_consumer')
      }

      /** Ends the stream after its last message (expired event or retry hint). */
      end(reason: CloseReason): void {
        if (this.ending || this.finished) return
        this.ending = reason
        this.wake()
        // A socket that does not take the last message is cut.
        const timer = setTimeout(() => this.cut(reason), 2000)
        timer.unref()
        this.timers.push(timer)
      }

      /** Closes the socket now, whatever it still holds. */
      cut(reason: CloseReason): void {
        this.ending ??= reason
        this.reply.raw.destroy()
      }

      /** Delivery order: heartbeats, then events as fast as the agent's delivery bucket allows. */
      private async *messages(gap: string | undefined): AsyncGenerator<EventMessage> {
        yield* this.send({ retry: c.SSE_RETRY_MS })
        if (gap) yield* this.send({ event: 'gap', data: gap })
        while (!this.ending) {
          if (this.heartbeatDue) {
            this.heartbeatDue = false
            yield* this.send({ comment: ' heartbeat' })
            continue
          }
          if (this.buffer.length === 0) {
            await this.signal()
            continue
          }
          const policy = app.buckets.policy('delivery')
          const decision = take(this.agent.state, { capacity: policy.capacity, refillRate: policy.refill_rate }, performance.now())
          if (!decision.allowed) {
            await this.signal(decision.retryAfterMs)
            continue
          }
          this.agent.state = decision.state
          const next = this.buffer.shift()
          if (!next) continue
          metrics.sseEventsSent.inc()
          yield* this.send({ id: next.id, data: JSON.stringify(next.event) })
        }
        if (this.ending === 'expired') yield* this.send({ event: 'expired', data: JSON.stringify({ reason: 'token expired' }) })
        if (this.ending === 'drain') yield* this.send({ retry: c.SSE_RETRY_MS })
      }

      private async *send(message: EventMessage): AsyncGenerator<EventMessage> {
        this.pulled = false
        yield message
        this.pulled = true
      }

      private signal(ms?: number): Promise<void> {
        return new Promise((resolve) => {
          const timer = ms === undefined ? undefined : setTimeout(done, ms)
          function done() {
            clearTimeout(timer)
            resolve()
          }
          this.waiter = done
        })
      }

      private wake(): void {
        const waiter = this.waiter
        this.waiter = null
        waiter?.()
      }

      /** Releases everything; `reason` null: the stream never opened (nothing to count as closed). */
      finish(reason: CloseReason | null): void {
        if (this.finished) return
        this.finished = true
        this.ending = reason ?? 'client'
        for (const timer of this.timers) clearTimeout(timer)
        this.unsubscribe()
        this.wake()
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
          const retryAfter = String(Math.max(1, Math.ceil(slot.retryAfterMs / 1000)))
          throw new HttpError(429, `agent already has ${cap} open streams`, { 'Retry-After': retryAfter })
        }
        const stream = new Stream(id, principal, options.items ? new Set(options.items) : null, reply)
        let gap: string | undefined
        try {
          gap = await stream.start(options.lastEventId)
        } catch (err) {
          stream.finish(null)
          request.log.warn({ err: (err as Error).message }, 'history unavailable')
          throw new HttpError(503, 'history unavailable, retry shortly', { 'Retry-After': '1' })
        }
        stream.attach(gap)
      }
    })

    // Shutdown: refuse new streams, then close open ones spread over DRAIN_MS, each told to
    // retry, so the clients do not reconnect to the other replicas as one herd.
    app.addHook('preClose', async () => {
      draining = true
      const streams = [...open]
      const step = streams.length > 1 ? c.DRAIN_MS / (streams.length - 1) : 0
      const timers = streams.map((s, i) => setTimeout(() => s.end('drain'), i * step))
      await Promise.race([
        Promise.all(streams.map((s) => s.done)),
        new Promise((resolve) => setTimeout(resolve, c.DRAIN_MS + 3000).unref())
      ])
      for (const timer of timers) clearTimeout(timer)
      for (const s of open) s.cut('drain')
    })
  },
  { name: 'sse-hub', dependencies: ['metrics', 'events', 'buckets', 'auth', 'redis'] }
)
