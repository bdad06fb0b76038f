import { fastifyCookie } from '@fastify/cookie'
import fp from 'fastify-plugin'
import { Authenticator } from '../src/auth/authenticate.js'
import type { Principal } from '../src/auth/credentials.js'
import { SessionCookie } from '../src/auth/session.js'
import { MemoryTicketStore, RedisTicketStore } from '../src/auth/ticket-store.js'
import { Tickets } from '../src/auth/tickets.js'
import { JwtVerifier } from '../src/auth/verifier.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Single-use tickets for `?ticket=` on the SSE stream (issue, peek, consume). */
    tickets: Pick<Tickets, 'issue' | 'peek' | 'consume'>
    /** The stream cookie session (POST/DELETE /v1/sse-session, the demo login). */
    sessionCookie: Pick<SessionCookie, 'set' | 'clear'>
  }
  interface FastifyRequest {
    principal: Principal
    /** A stream opened by ticket: uses the ticket up (401 if it is gone); called last, once the stream can open. */
    redeemTicket: (() => Promise<void>) | null
  }
  interface FastifyContextConfig {
    /** SSE route: also accepts the HttpOnly cookie or a single-use `?ticket=`. */
    stream?: boolean
  }
}

/**
 * JWT authentication for every route not marked `public`; the SSE route also takes the session
 * cookie or a single-use ticket. Tickets live in Redis when configured (any replica redeems
 * them), in process memory otherwise.
 */
export default fp(
  async (app) => {
    const config = app.config
    const verifier = new JwtVerifier(config, app.log)
    const store = app.redis
      ? new RedisTicketStore(app.redis, app.keys)
      : new MemoryTicketStore({ maxEntries: config.TICKETS_MEMORY_MAX })
    const tickets = new Tickets(store, {
      ttlS: config.TICKET_TTL_S,
      clockToleranceS: config.JWT_CLOCK_TOLERANCE_S,
      metrics: app.redis ? app.metrics : undefined,
      log: app.log
    })
    const authenticator = new Authenticator(verifier, tickets, (principal) => app.revocations.isRevoked(principal), fastifyCookie.parse)
    // Functions, not the instance: callers may pass `app.tickets.consume` on by itself.
    app.decorate('tickets', {
      issue: (principal: Principal) => tickets.issue(principal),
      peek: (ticket: string) => tickets.peek(ticket),
      consume: (ticket: string) => tickets.consume(ticket)
    })
    const session = new SessionCookie({ secure: config.SSE_COOKIE_SECURE })
    app.decorate('sessionCookie', { set: session.set.bind(session), clear: session.clear.bind(session) })
    app.decorateRequest('principal') // set by the hook below on every non-public route
    app.decorateRequest('redeemTicket', null)

    app.addHook('onRequest', async (request) => {
      if (request.is404 || request.routeOptions.config.public) return
      const { principal, redeem } = await authenticator.authenticate(request, request.routeOptions.config.stream === true)
      request.principal = principal
      request.redeemTicket = redeem ?? null
    })
    app.addHook('onClose', async () => tickets.close())
  },
  { name: 'auth', dependencies: ['redis', 'metrics', 'ip-limit', 'revocations'] }
)
