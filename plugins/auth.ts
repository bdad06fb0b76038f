import fp from 'fastify-plugin'

/** Who is calling: from a verified JWT (or a redeemed SSE ticket). */
export interface Principal {
  sub: string
  agentId: string
  scopes: string[]
  /** Expiry, Unix seconds, when the token has one. */
  exp?: number
  /** All verified claims, for bucket key selectors (`jwt.claims.<name>`). */
  claims: Record<string, unknown>
}

declare module 'fastify' {
  interface FastifyInstance {
    verifyJwt(token: string): Promise<Principal>
  }
  interface FastifyRequest {
    principal: Principal
  }
  interface FastifyContextConfig {
    /** SSE route: also accepts the HttpOnly cookie or a single-use `?ticket=`. */
    stream?: boolean
  }
}

// PLACEHOLDER: replaced by the auth work.
export default fp(async () => {}, { name: 'auth' })
