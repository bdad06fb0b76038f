import type {} from '@fastify/cookie'
import type { FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { createRemoteJWKSet, errors, jwtVerify, type CryptoKey, type JWTVerifyGetKey } from 'jose'
import { createPublicKey, type KeyObject } from 'node:crypto'
import { ConfigError, type Config } from '../src/config.js'
import { allowedAlgorithms, isExpired, jwtQueryParam, principalFromClaims, type Principal } from '../src/auth/credentials.js'
import { withTimeout } from '../src/shared/timeout.js'
import { VerifiedTokens } from '../src/auth/verified-tokens.js'
import { HttpError } from '../src/errors.js'
import { SESSION_COOKIE } from '../src/auth/session.js'
import { memoryTicketStore, redisTicketStore } from '../src/auth/tickets.js'

export type { Principal }


declare module 'fastify' {
  interface FastifyInstance {
    verifyJwt(token: string): Promise<Principal>
    tickets: {
      /** A single-use ticket bound to the principal, for `?ticket=` on the SSE stream. */
      issue(principal: Principal): Promise<{ ticket: string; expiresIn: number }>
      /** The principal once; null for an unknown, used or expired ticket, or an expired token. */
      redeem(ticket: string): Promise<Principal | null>
    }
  }
  interface FastifyRequest {
    principal: Principal
  }
  interface FastifyContextConfig {
    /** SSE route: also accepts the HttpOnly cookie or a single-use `?ticket=`. */
    stream?: boolean
  }
}

/** 401 with the RFC 6750 challenge; the description never contains the credential. */
function invalidToken(description: string): HttpError {
  const safe = description.replace(/["\\]/g, "'")
  return new HttpError(401, `invalid token: ${description}`, {
    'WWW-Authenticate': `Bearer error="invalid_token", error_description="${safe}"`
  })
}

function noToken(message: string): HttpError {
  return new HttpError(401, message, { 'WWW-Authenticate': 'Bearer realm="moltbridge"' })
}

/** A hung Redis must not hang the ticket route or the stream's opening. */
const STORE_TIMEOUT_MS = 1000

/** The JWKS endpoint failing is our problem, not the caller's: 503, not 401. */
class KeysUnavailable extends Error {}

/** Why a token was refused, in words a client developer can act on (claim names included). */
function describe(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'token expired (exp)'
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf') return 'token not yet valid (nbf)'
    if (err.claim === 'iss' || err.claim === 'aud') return `unexpected "${err.claim}" claim`
    return `claim "${err.claim}" is invalid`
  }
  if (err instanceof errors.JOSEAlgNotAllowed) return 'algorithm not allowed'
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'signature verification failed'
  if (err instanceof errors.JWKSNoMatchingKey) return 'no signing key matches the token (kid)'
  if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid) return 'malformed token'
  return 'token cannot be verified'
}

function parsePublicKey(pem: string): KeyObject {
  try {
    // Environments often carry a PEM on one line with literal `\n`.
    return createPublicKey(pem.replace(/\\n/g, '\n'))
  } catch {
    throw new ConfigError('Invalid configuration: JWT_PUBLIC_KEY is not a PEM public key (SPKI, PKCS#1 or certificate)')
  }
}

/** Verified tokens remembered at once, and for how long at most (see VerifiedTokens). */
const VERIFIED_MAX = 10_000
const VERIFIED_MAX_AGE_MS = 60_000

/** One key resolver for every configured source: HMAC algorithms get the secret, the others the key or JWKS. */
function keyResolver(config: Config): JWTVerifyGetKey {
  const secret = config.JWT_SECRET ? new TextEncoder().encode(config.JWT_SECRET) : undefined
  const publicKey = config.JWT_PUBLIC_KEY ? parsePublicKey(config.JWT_PUBLIC_KEY) : undefined
  const jwks = config.JWT_JWKS_URL
    ? createRemoteJWKSet(new URL(config.JWT_JWKS_URL), { cooldownDuration: config.JWT_JWKS_COOLDOWN_MS })
    : undefined
  // jose imports a raw secret into a CryptoKey on every verify; import it once per HS algorithm.
  const hmacKeys = new Map<string, Promise<CryptoKey>>()
  const hmacKey = (alg: string, raw: Uint8Array) => {
    let key = hmacKeys.get(alg)
    if (!key) {
      const hash = `SHA-${alg.slice(2)}`
      key = crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash }, false, ['verify'])
      hmacKeys.set(alg, key)
    }
    return key
  }
  return async (header, token) => {
    // The allowlist has already refused algorithms without a key source (see allowedAlgorithms).
    if (header.alg?.startsWith('HS') && secret) return hmacKey(header.alg, secret)
    if (publicKey) return publicKey
    if (!jwks) throw new errors.JOSEAlgNotAllowed('no key for this algorithm')
    try {
      return await jwks(header, token)
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err
      throw new KeysUnavailable(err instanceof Error ? err.message : String(err))
    }
  }
}

/** The token of `Authorization: Bearer <token>`; undefined without the header. */
function bearer(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization
  if (header === undefined) return undefined
  const match = /^Bearer[ ]+([^\s]+)[ ]*$/i.exec(header)
  if (!match) throw invalidToken('the Authorization header must be "Bearer <token>"')
  return match[1]
}

function queryString(request: FastifyRequest, name: string): string | undefined {
  const value = (request.query as Record<string, unknown>)[name]
  return typeof value === 'string' && value !== '' ? value : undefined
}

/**
 * JWT authentication for every route not marked `public` (SPEC 3): HS* with JWT_SECRET, RS/PS/ES/EdDSA
 * with JWT_PUBLIC_KEY or JWT_JWKS_URL, only the allowed algorithms, issuer and audience when set.
 * The SSE route also takes the session cookie or a single-use ticket (SPEC 4).
 */
export default fp(
  async (app) => {
    const config = app.config
    let algorithms: string[]
    try {
      algorithms = allowedAlgorithms(config.JWT_ALGORITHMS, {
        secret: Boolean(config.JWT_SECRET),
        publicKey: Boolean(config.JWT_PUBLIC_KEY || config.JWT_JWKS_URL)
      })
    } catch (err) {
      throw new ConfigError(`Invalid configuration: JWT_ALGORITHMS: ${(err as Error).message}`)
    }
    const getKey = keyResolver(config)
    const verifyOptions = {
      algorithms,
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
      clockTolerance: config.JWT_CLOCK_TOLERANCE_S
    }

    const verified = new VerifiedTokens<Principal>(VERIFIED_MAX, VERIFIED_MAX_AGE_MS)

    async function verifyJwt(token: string): Promise<Principal> {
      const known = verified.get(token, Date.now())
      if (known) return known
      const principal = await verifySignatureAndClaims(token)
      verified.set(token, principal, principal.exp === undefined ? undefined : principal.exp * 1000, Date.now())
      return principal
    }

    async function verifySignatureAndClaims(token: string): Promise<Principal> {
      let payload: Record<string, unknown>
      try {
        payload = (await jwtVerify(token, getKey, verifyOptions)).payload
      } catch (err) {
        if (err instanceof KeysUnavailable) {
          app.log.warn({ err: err.message }, 'JWKS unavailable')
          throw new HttpError(503, 'signing keys are unavailable, retry shortly', { 'Retry-After': '1' })
        }
        throw invalidToken(describe(err))
      }
      try {
        return principalFromClaims(payload)
      } catch (err) {
        throw invalidToken((err as Error).message)
      }
    }

    const store = app.redis ? redisTicketStore(app.redis, app.keys) : memoryTicketStore(config.TICKETS_MEMORY_MAX)
    /** Store calls: timed and counted on Redis; an outage is a 503, not a 500. */
    async function storeCall<T>(op: string, call: () => Promise<T>): Promise<T> {
      if (!app.redis) return call()
      const end = app.metrics.redisDuration.startTimer({ op })
      try {
        return await withTimeout(call(), STORE_TIMEOUT_MS)
      } catch (err) {
        app.metrics.redisErrors.inc({ op })
        app.log.warn({ err: (err as Error).message, op }, 'ticket store unavailable')
        throw new HttpError(503, 'ticket store unavailable, retry shortly', { 'Retry-After': '1' })
      } finally {
        end()
      }
    }
    const nowS = () => Math.floor(Date.now() / 1000)
    app.decorate('tickets', {
      async issue(principal: Principal) {
        const expiresIn = config.TICKET_TTL_S
        const ticket = await storeCall('ticket_issue', () => store.issue(principal, expiresIn))
        return { ticket, expiresIn }
      },
      async redeem(ticket: string) {
        const principal = await storeCall('ticket_redeem', () => store.redeem(ticket))
        // Bound to the caller's token: a ticket never outlives it.
        return principal && !isExpired(principal, nowS(), config.JWT_CLOCK_TOLERANCE_S) ? principal : null
      }
    })
    app.decorate('verifyJwt', verifyJwt)
    app.decorateRequest('principal') // set by the hook below on every non-public route

    /** Header, then the cookie, then a ticket; a bad cookie gives way to a ticket sent with it. */
    async function streamPrincipal(request: FastifyRequest): Promise<Principal> {
      const token = bearer(request)
      if (token) return verifyJwt(token)
      const cookie = request.cookies[SESSION_COOKIE]
      const ticket = queryString(request, 'ticket')
      if (cookie) {
        try {
          return await verifyJwt(cookie)
        } catch (err) {
          if (!ticket) throw err
        }
      }
      if (!ticket) throw noToken(`authentication required: Authorization: Bearer <JWT>, the ${SESSION_COOKIE} cookie, or ?ticket= from POST /v1/sse-tickets`)
      const principal = await app.tickets.redeem(ticket)
      if (!principal) throw invalidToken('ticket is unknown, expired or already used')
      return principal
    }

    app.addHook('onRequest', async (request) => {
      if (request.is404 || request.routeOptions.config.public) return
      const param = jwtQueryParam(request.query as Record<string, unknown>)
      if (param) {
        throw invalidToken(
          `a JWT in the query string (${param}) is refused because URLs leak into logs: send it in the Authorization header, or get a ticket from POST /v1/sse-tickets and pass ?ticket=`
        )
      }
      if (request.routeOptions.config.stream) {
        request.principal = await streamPrincipal(request)
        return
      }
      const token = bearer(request)
      if (!token) throw noToken('authentication required: Authorization: Bearer <JWT>')
      request.principal = await verifyJwt(token)
    })

    app.addHook('onClose', async () => store.close())
  },
  { name: 'auth', dependencies: ['redis', 'metrics', '@fastify/cookie'] }
)
