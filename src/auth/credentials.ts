import { HttpError } from '../errors.js'
import { ID_MAX_LENGTH } from '../rating.js'
import { containsJwt, TOKEN_PARAMS } from '../shared/compact-jwt.js'

/**
 * Who is calling: from a verified JWT (or a redeemed SSE ticket). Verification proves the claims
 * were signed, nothing more: what a principal may do is checked where it acts (`assertMayRateFor`).
 */
export interface Principal {
  /** The user the token speaks for: the only `user_id` it may rate for, and whose scores it reads. */
  sub: string
  agentId: string
  scopes: string[]
  /** Expiry, Unix seconds, when the token has one. */
  exp?: number
  /** Issued at, Unix seconds, when the token says (a revocation refuses tokens issued before it). */
  iat?: number
  /** All verified claims, for bucket key selectors (`jwt.claims.<name>`). */
  claims: Record<string, unknown>
}

function idClaim(claims: Record<string, unknown>, name: string): string {
  const value = claims[name]
  if (typeof value !== 'string' || value.length === 0 || value.length > ID_MAX_LENGTH) {
    throw new Error(
      value === undefined
        ? `missing required claim "${name}"`
        : `claim "${name}" must be a non-empty string of at most ${ID_MAX_LENGTH} characters`
    )
  }
  return value
}

const isScope = (scope: unknown): scope is string => typeof scope === 'string' && scope.length > 0

/** Scopes from `scope` (space-separated, RFC 8693) or `scp` (array, or a string as some issuers send). */
export function scopesOf(claims: Record<string, unknown>): string[] {
  const raw = claims.scope ?? claims.scp
  const list: unknown[] = typeof raw === 'string' ? raw.split(' ') : Array.isArray(raw) ? raw : []
  // Filtered only when something must go: a filtered array keeps room to grow (17 slots), held
  // as long as the principal (the verified-token cache, every open stream).
  return list.every(isScope) ? list : list.filter(isScope)
}

/** The principal of verified claims; throws an Error naming the missing or malformed claim. */
export function principalFromClaims(claims: Record<string, unknown>): Principal {
  const sub = idClaim(claims, 'sub')
  const agentId = idClaim(claims, 'agent_id')
  const exp = typeof claims.exp === 'number' ? claims.exp : undefined
  const iat = typeof claims.iat === 'number' ? claims.iat : undefined
  return { sub, agentId, scopes: scopesOf(claims), exp, iat, claims }
}

/** The scope of backend services that rate on behalf of any user. */
const RATE_FOR_ANY_USER = 'ratings:write'

/** A caller rates for itself (`user_id` = its `sub`); only a token with `ratings:write` rates for anyone: else 403. */
export function assertMayRateFor(principal: Pick<Principal, 'sub' | 'scopes'>, userId: string): void {
  if (userId === principal.sub || principal.scopes.includes(RATE_FOR_ANY_USER)) return
  throw new HttpError(
    403,
    `body/user_id must be the token's sub ("${principal.sub}"): rating for another user needs the scope ${RATE_FOR_ANY_USER}`
  )
}

/** True once the principal's token has expired (allowing the configured clock tolerance). */
export function isExpired(principal: Principal, nowS: number, toleranceS: number): boolean {
  return principal.exp !== undefined && principal.exp + toleranceS <= nowS
}

/** The name of the first query parameter that carries a JWT (they leak into proxy and browser logs), if any. */
export function jwtQueryParam(query: Record<string, unknown>): string | undefined {
  for (const [name, value] of Object.entries(query)) {
    const values = Array.isArray(value) ? value : [value]
    if (TOKEN_PARAMS.has(name.toLowerCase()) && values.some((value) => value !== '')) return name
    if (values.some((value) => typeof value === 'string' && containsJwt(value))) return name
  }
  return undefined
}

export const SUPPORTED_ALGORITHMS = [
  'HS256', 'HS384', 'HS512',
  'RS256', 'RS384', 'RS512',
  'PS256', 'PS384', 'PS512',
  'ES256', 'ES384', 'ES512',
  'EdDSA', 'Ed25519'
] as const

export interface KeySources {
  secret: boolean
  publicKey: boolean
}

/**
 * The allowed algorithms: the configured list (checked against the keys that can verify them)
 * or the default for the configured keys. `none` is never allowed; HMAC only with a secret, so a
 * public key can never be used as an HMAC secret (key confusion).
 */
export function allowedAlgorithms(setting: string | undefined, keys: KeySources): string[] {
  if (!setting) return [...(keys.secret ? ['HS256'] : []), ...(keys.publicKey ? ['RS256', 'ES256'] : [])]
  const list = setting.split(',').map((alg) => alg.trim())
  for (const alg of list) {
    if (!(SUPPORTED_ALGORITHMS as readonly string[]).includes(alg)) throw new Error(`${alg} is not a supported algorithm`)
    const hmac = alg.startsWith('HS')
    if (hmac && !keys.secret) throw new Error(`${alg} needs JWT_SECRET`)
    if (!hmac && !keys.publicKey) throw new Error(`${alg} needs JWT_PUBLIC_KEY or JWT_JWKS_URL`)
  }
  return list
}
