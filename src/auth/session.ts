import type { CookieSerializeOptions } from '@fastify/cookie'

/** The HttpOnly SameSite cookie that may carry the JWT for the SSE stream (browsers' EventSource). */
export const SESSION_COOKIE = 'mb_session'

/** The only path the cookie is sent to: the streams, never the REST routes (no cross-site requests there). */
export const SESSION_COOKIE_PATH = '/events'

/** Where the cookie goes: a Fastify reply with @fastify/cookie. */
export interface CookieJar {
  setCookie(name: string, value: string, options: CookieSerializeOptions): unknown
  clearCookie(name: string, options: CookieSerializeOptions): unknown
}

export interface SessionCookieOptions {
  /** `Secure` attribute (SSE_COOKIE_SECURE): false only for plain-HTTP development. */
  secure: boolean
  /** Wall-clock milliseconds (token expiries are wall-clock). */
  clock?: () => number
}

/**
 * The stream cookie session: `POST /v1/sse-session` and the demo login set it, `DELETE` clears
 * it. HttpOnly (page scripts never read the JWT), `SameSite=Lax` (sent by the page's own site,
 * not on other sites' requests), `Path=/events`, and it expires with the token it holds.
 */
export class SessionCookie {
  constructor(private readonly options: SessionCookieOptions) {}

  /**
   * Puts `token` in the cookie until `exp` (Unix seconds); returns the seconds it lasts, or
   * undefined for a token without `exp` (then the cookie lasts the browser session).
   */
  set(jar: CookieJar, token: string, exp: number | undefined): number | undefined {
    const { clock = Date.now } = this.options
    // A token inside its clock tolerance is still valid: its cookie gets a second, not Max-Age=0 (delete).
    const maxAge = exp === undefined ? undefined : Math.max(1, exp - Math.floor(clock() / 1000))
    jar.setCookie(SESSION_COOKIE, token, { ...this.attributes(), ...(maxAge === undefined ? {} : { maxAge }) })
    return maxAge
  }

  clear(jar: CookieJar): void {
    jar.clearCookie(SESSION_COOKIE, this.attributes())
  }

  private attributes(): CookieSerializeOptions {
    return { httpOnly: true, sameSite: 'lax', path: SESSION_COOKIE_PATH, secure: this.options.secure }
  }
}
