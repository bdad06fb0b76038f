import { HttpError } from '../errors.js'
import { jwtQueryParam, type Principal } from './credentials.js'
import { SESSION_COOKIE } from './session.js'
import type { Tickets } from './tickets.js'
import { invalidToken, type JwtVerifier } from './verifier.js'

/** What authentication reads of a request. */
export interface CredentialsCarrier {
  headers: { authorization?: string; cookie?: string }
  query: unknown
}

/** A Cookie header's values by name (@fastify/cookie's `parse`). */
export type CookieParser = (header: string) => Record<string, string | undefined>

function noToken(message: string): HttpError {
  return new HttpError(401, message, { 'WWW-Authenticate': 'Bearer realm="moltbridge"' })
}

const usedTicket = () => invalidToken('ticket is unknown, expired or already used')

/** The token of `Authorization: Bearer <token>`; undefined without the header. */
export function bearer(request: Pick<CredentialsCarrier, 'headers'>): string | undefined {
  const header = request.headers.authorization
  if (header === undefined) return undefined
  const match = /^Bearer[ ]+([^\s]+)[ ]*$/i.exec(header)
  if (!match) throw invalidToken('the Authorization header must be "Bearer <token>"')
  return match[1]
}

/** Who is calling, and for a ticket, how to use it up once the request has passed everything else. */
export interface Authenticated {
  principal: Principal
  /** Set for a ticket: consumes it, or throws 401 when another request used it meanwhile. */
  redeem?: () => Promise<void>
}

/**
 * Who is calling a protected route: the JWT of the Authorization header. A stream route
 * (browsers' EventSource cannot set headers) also takes the session cookie or a single-use
 * `?ticket=`. A JWT in the query string is refused on every route: URLs leak into logs.
 */
export class Authenticator {
  constructor(
    private readonly verifier: JwtVerifier,
    private readonly tickets: Tickets,
    /** True for a principal whose user or agent was revoked after its token was issued. */
    private readonly revoked: (principal: Principal) => boolean = () => false,
    /** Only the stream route reads cookies, so only its requests pay for parsing them. */
    private readonly parseCookie: CookieParser = () => ({})
  ) {}

  /**
   * The verified caller (for a ticket, also how to use it up); a 401 for a revoked one, checked
   * after the verified-token cache and after a ticket is read, so neither lets a revoked token
   * through.
   */
  async authenticate(request: CredentialsCarrier, stream: boolean): Promise<Authenticated> {
    const caller = await this.credentials(request, stream)
    if (this.revoked(caller.principal)) throw invalidToken('token revoked: get a new token')
    return caller
  }

  private async credentials(request: CredentialsCarrier, stream: boolean): Promise<Authenticated> {
    const query = request.query as Record<string, unknown>
    const param = jwtQueryParam(query)
    if (param) {
      throw invalidToken(
        `a JWT in the query string (${param}) is refused because URLs leak into logs: send it in the Authorization header, or get a ticket from POST /v1/sse-tickets and pass ?ticket=`
      )
    }
    if (stream) return this.streamCaller(request, query)
    const token = bearer(request)
    if (!token) throw noToken('authentication required: Authorization: Bearer <JWT>')
    return { principal: await this.verifier.verify(token) }
  }

  /** Header, then the cookie, then a ticket; a bad cookie gives way to a ticket sent with it. */
  private async streamCaller(request: CredentialsCarrier, query: Record<string, unknown>): Promise<Authenticated> {
    const token = bearer(request)
    if (token) return { principal: await this.verifier.verify(token) }
    const cookie = request.headers.cookie ? this.parseCookie(request.headers.cookie)[SESSION_COOKIE] : undefined
    const ticket = typeof query.ticket === 'string' && query.ticket !== '' ? query.ticket : undefined
    if (cookie) {
      try {
        return { principal: await this.verifier.verify(cookie) }
      } catch (err) {
        if (!ticket) throw err
      }
    }
    if (!ticket) {
      throw noToken(`authentication required: Authorization: Bearer <JWT>, the ${SESSION_COOKIE} cookie, or ?ticket= from POST /v1/sse-tickets`)
    }
    const principal = await this.tickets.peek(ticket)
    if (!principal) throw usedTicket()
    const redeem = async () => {
      if (!(await this.tickets.consume(ticket))) throw usedTicket()
    }
    return { principal, redeem }
  }
}
