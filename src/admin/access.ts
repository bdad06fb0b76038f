import type { Principal } from '../auth/credentials.js'
import { HttpError } from '../errors.js'
import type { Log } from '../logger.js'

/** The scope every /admin route needs. */
export const ADMIN_SCOPE = 'moltbridge:admin'

/** What the admin hooks read of a request (auth has set the principal by then, or answered 401). */
export interface AdminRequest {
  principal?: Principal | null
  method: string
  url: string
  params: unknown
  body: unknown
  log: Log
}

/** 403 for a valid token without the admin scope. */
export async function requireAdmin(request: AdminRequest): Promise<void> {
  if (!request.principal?.scopes.includes(ADMIN_SCOPE)) {
    throw new HttpError(403, `the admin API needs a token with the scope ${ADMIN_SCOPE}`)
  }
}

/**
 * One info line per admin request that got past authentication: who (the token's `sub`, never
 * the token), what (method, route, parameters, body: ids and limits, no secret), and the status.
 */
export async function logAdminAction(request: AdminRequest, reply: { statusCode: number }): Promise<void> {
  const { principal } = request
  if (!principal) return // refused before authentication: no caller to name
  const admin = { sub: principal.sub, action: `${request.method} ${request.url}`, params: request.params, body: request.body, status: reply.statusCode }
  request.log.info({ admin }, reply.statusCode === 403 ? 'admin action refused' : 'admin action')
}
