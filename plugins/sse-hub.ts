import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { SSE_HEADERS } from '../src/sse/frame.js'
import { deliveryRules } from '../src/sse/delivery.js'
import { SseHub, type OpenRequest } from '../src/sse/hub.js'
import { MemoryStreamSlots, RedisStreamSlots } from '../src/sse/stream-slots.js'
import { sendHead, sinkOf } from '../src/sse/reply.js'

type StreamOptions = Pick<OpenRequest, 'items' | 'resume'>

declare module 'fastify' {
  interface FastifyInstance {
    sseHub: {
      /** Opens the caller's stream on `reply` (400 for a bad resume position, 429 over the agent's cap, 503 while draining); HEAD answers the headers only. */
      open(request: FastifyRequest, reply: FastifyReply, options: StreamOptions): Promise<void>
      /** Open streams per agent over every replica. */
      openPerAgent(): Promise<Map<string, number>>
    }
  }
}

/** The SSE hub: every open stream of this replica, fed by the event bus. */
export default fp(
  async (app) => {
    const { config, metrics } = app
    const slots = app.redis ? new RedisStreamSlots(app.redis, app.keys) : new MemoryStreamSlots()
    const hub = new SseHub(
      { bus: app.events, slots, delivery: deliveryRules((agentId) => app.buckets.effective('delivery', agentId)), metrics, log: app.log },
      {
        heartbeatMs: config.SSE_HEARTBEAT_MS,
        retryMs: config.SSE_RETRY_MS,
        maxUnsentBytes: config.SSE_MAX_UNSENT_BYTES,
        maxStreamsPerAgent: config.SSE_MAX_STREAMS_PER_AGENT,
        drainMs: config.DRAIN_MS
      }
    )
    app.decorate('sseHub', {
      async open(request: FastifyRequest, reply: FastifyReply, options: StreamOptions) {
        // HEAD: the headers a stream would get, and the end (nothing opened, no ticket used).
        if (request.method === 'HEAD') return void reply.code(200).headers(SSE_HEADERS).send()
        const { principal, redeemTicket: redeem, log } = request
        await hub.open({ ...options, principal, redeem, sink: sinkOf(reply), log, begin: () => sendHead(request, reply) })
      },
      openPerAgent: () => hub.openPerAgent()
    })
    // A revocation heard here (local, broadcast or reload) ends the revoked streams of this replica.
    const stopRevoking = app.revocations.onRevoke(() => {
      const ended = hub.revoke((owner) => app.revocations.isRevoked(owner))
      if (ended) app.log.info({ streams: ended }, 'revoked streams ended')
    })
    app.addHook('preClose', () => hub.drain())
    app.addHook('onClose', () => {
      stopRevoking()
      return hub.close()
    })
  },
  { name: 'sse-hub', dependencies: ['metrics', 'events', 'buckets', 'auth', 'redis', 'revocations'] }
)
