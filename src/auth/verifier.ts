import { createRemoteJWKSet, errors, jwtVerify, type CryptoKey, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose'
import { createPublicKey, type KeyObject } from 'node:crypto'
import { ConfigError, type Config } from '../config.js'
import { HttpError } from '../errors.js'
import type { Log } from '../logger.js'
import { OutageLog } from '../shared/outage-log.js'
import { allowedAlgorithms, principalFromClaims, type Principal } from './credentials.js'
import { VerifiedTokens } from './verified-tokens.js'

/** The settings a verifier is built from. */
export type VerifierConfig = Pick<
  Config,
  | 'JWT_SECRET'
  | 'JWT_PUBLIC_KEY'
  | 'JWT_JWKS_URL'
  | 'JWT_JWKS_COOLDOWN_MS'
  | 'JWT_ALGORITHMS'
  | 'JWT_ISSUER'
  | 'JWT_AUDIENCE'
  | 'JWT_CLOCK_TOLERANCE_S'
  | 'JWT_REQUIRE_EXP'
>

/** Verified tokens remembered at once, and for how long at most (see VerifiedTokens). */
const VERIFIED_MAX = 10_000
const VERIFIED_MAX_AGE_MS = 60_000

/** 401 with the RFC 6750 challenge; the description never contains the credential. */
export function invalidToken(description: string): HttpError {
  const safe = description.replace(/["\\]/g, "'")
  return new HttpError(401, `invalid token: ${description}`, {
    'WWW-Authenticate': `Bearer error="invalid_token", error_description="${safe}"`
  })
}

/** The JWKS endpoint failing is our problem, not the caller's: 503, not 401. */
class KeysUnavailable extends Error {}

/** Why a token was refused, in words a client developer can act on (claim names included). */
function describe(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'token expired (exp)'
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.reason === 'missing') return `missing required claim "${err.claim}"`
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

/** One key resolver for every configured source: HMAC algorithms get the secret, the others the key or JWKS. */
function keyResolver(config: VerifierConfig, jwksOutage: OutageLog): JWTVerifyGetKey {
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
      key = crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: `SHA-${alg.slice(2)}` }, false, ['verify'])
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
      const key = await jwks(header, token)
      jwksOutage.up()
      return key
    } catch (err) {
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err
      jwksOutage.down(err)
      throw new KeysUnavailable()
    }
  }
}

/**
 * JWT verification: HS* with JWT_SECRET, RS/PS/ES/EdDSA with JWT_PUBLIC_KEY or JWT_JWKS_URL, only
 * the allowed algorithms, issuer and audience when set. A token verified once is trusted until
 * it expires (at most a minute): a repeat request skips the signature check.
 */
export class JwtVerifier {
  private readonly getKey: JWTVerifyGetKey
  private readonly options: JWTVerifyOptions
  private readonly verified: VerifiedTokens<Principal>

  /** Throws ConfigError naming the variable when the key settings do not fit together. */
  constructor(config: VerifierConfig, log: Log, clock: () => number = Date.now) {
    let algorithms: string[]
    try {
      algorithms = allowedAlgorithms(config.JWT_ALGORITHMS, {
        secret: Boolean(config.JWT_SECRET),
        publicKey: Boolean(config.JWT_PUBLIC_KEY || config.JWT_JWKS_URL)
      })
    } catch (err) {
      throw new ConfigError(`Invalid configuration: JWT_ALGORITHMS: ${(err as Error).message}`)
    }
    this.getKey = keyResolver(config, new OutageLog(log, { down: 'JWKS unavailable', up: 'JWKS available again' }))
    this.options = {
      algorithms,
      issuer: config.JWT_ISSUER,
      audience: config.JWT_AUDIENCE,
      clockTolerance: config.JWT_CLOCK_TOLERANCE_S,
      requiredClaims: config.JWT_REQUIRE_EXP ? ['exp'] : []
    }
    this.verified = new VerifiedTokens(VERIFIED_MAX, VERIFIED_MAX_AGE_MS, clock)
  }

  /** The principal of a valid token; a 401 HttpError saying why not, or a 503 when the JWKS is unreachable. */
  async verify(token: string): Promise<Principal> {
    const known = this.verified.get(token)
    if (known) return known
    const principal = await this.verifySignatureAndClaims(token)
    this.verified.set(token, principal, principal.exp === undefined ? undefined : principal.exp * 1000)
    return principal
  }

  private async verifySignatureAndClaims(token: string): Promise<Principal> {
    let payload: Record<string, unknown>
    try {
      payload = (await jwtVerify(token, this.getKey, this.options)).payload
    } catch (err) {
      if (err instanceof KeysUnavailable) throw new HttpError(503, 'signing keys are unavailable, retry shortly', { 'Retry-After': '1' })
      throw invalidToken(describe(err))
    }
    try {
      return principalFromClaims(payload)
    } catch (err) {
      throw invalidToken((err as Error).message)
    }
  }
}
