import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type JWK, type JWTPayload, type CryptoKey } from 'jose'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { TEST_SECRET, type Teardown } from './app.js'

export interface MintOptions {
  /** Default HS256. */
  alg?: string
  /** HMAC secret (string) or private key; default TEST_SECRET. */
  key?: string | Uint8Array | CryptoKey
  kid?: string
  /** Seconds from now; default 300; null: no `exp` claim at all. */
  expiresIn?: number | null
  notBefore?: number
  /** `iat`, Unix seconds; default now. */
  issuedAt?: number
  issuer?: string
  audience?: string
}

/** Claims every valid gateway token carries; a test removes one with `{ sub: undefined }`. */
export const DEFAULT_CLAIMS: JWTPayload = { sub: 'user-1', agent_id: 'agent-1' }

const nowS = () => Math.floor(Date.now() / 1000)

/** A signed JWT (HS* with a secret, RS/PS/ES/EdDSA with a private key). */
export async function mint(claims: JWTPayload = {}, options: MintOptions = {}): Promise<string> {
  const payload = Object.fromEntries(Object.entries({ ...DEFAULT_CLAIMS, ...claims }).filter(([, v]) => v !== undefined))
  const jwt = new SignJWT(payload)
    .setProtectedHeader({ alg: options.alg ?? 'HS256', ...(options.kid ? { kid: options.kid } : {}) })
    .setIssuedAt(options.issuedAt)
  if (options.expiresIn !== null) jwt.setExpirationTime(nowS() + (options.expiresIn ?? 300))
  if (options.notBefore !== undefined) jwt.setNotBefore(options.notBefore)
  if (options.issuer) jwt.setIssuer(options.issuer)
  if (options.audience) jwt.setAudience(options.audience)
  const key = options.key ?? TEST_SECRET
  return jwt.sign(typeof key === 'string' ? new TextEncoder().encode(key) : key)
}

/** An `alg: none` token (jose refuses to make one on purpose, so it is built by hand). */
export function unsignedToken(claims: JWTPayload = {}): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url')
  return `${part({ alg: 'none', typ: 'JWT' })}.${part({ ...DEFAULT_CLAIMS, exp: nowS() + 300, ...claims })}.`
}

export interface KeyPair {
  alg: string
  kid: string
  privateKey: CryptoKey
  /** SPKI PEM, as JWT_PUBLIC_KEY takes it. */
  publicPem: string
  /** Public JWK with `kid`, `alg` and `use`, as a JWKS serves it. */
  jwk: JWK
}

export async function keyPair(alg: 'RS256' | 'ES256' | 'PS256' | 'EdDSA', kid = `${alg}-${nowS()}`): Promise<KeyPair> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true })
  return {
    alg,
    kid,
    privateKey,
    publicPem: await exportSPKI(publicKey),
    jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' }
  }
}

/** A real JWKS HTTP server on a free loopback port; `keys` can change while it runs. */
export async function startJwks(t: Teardown, keys: KeyPair[]) {
  const state = { keys: [...keys], fetches: 0 }
  const server = createServer((_req, res) => {
    state.fetches++
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ keys: state.keys.map((k) => k.jwk) }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections() // jose's fetch keeps the connection alive
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    state,
    add: (key: KeyPair) => void state.keys.push(key)
  }
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
