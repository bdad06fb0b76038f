import type { FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import { JwtVerifier } from '../../src/auth/verifier.js'
import { ConfigError } from '../../src/config.js'
import { buildTestApp, TEST_SECRET } from '../helpers/app.js'
import { bearer, keyPair, mint, startJwks, unsignedToken } from '../helpers/tokens.js'

const nowS = () => Math.floor(Date.now() / 1000)

/** POST /v1/sse-tickets with these headers: the smallest JWT-protected route. */
const call = (app: FastifyInstance, headers: Record<string, string> = {}, url = '/v1/sse-tickets') =>
  app.inject({ method: 'POST', url, headers })

/** A refusal as the contract wants it: 401, a Bearer challenge, the error JSON, and never the token. */
async function refused(t: Test, app: FastifyInstance, token: string, reason: RegExp) {
  const res = await call(app, bearer(token))
  t.equal(res.statusCode, 401, `401 for ${reason}`)
  t.match(res.headers['www-authenticate'], /^Bearer error="invalid_token", error_description="[^"]+"$/)
  t.match(res.json(), { statusCode: 401, error: 'Unauthorized', message: reason })
  t.notMatch(res.body, token.split('.')[1] || token, 'the token is not echoed')
}

t.test('JWT_SECRET (HS256): valid tokens pass, the attack set gets 401', async (t) => {
  const app = await buildTestApp(t)

  const ok = await call(app, bearer(await mint({ agent_id: 'agent-hs' })))
  t.equal(ok.statusCode, 201)
  t.match(ok.json(), { ticket: /^[A-Za-z0-9_-]{43}$/, expires_in: 30 })

  const none = await call(app)
  t.equal(none.statusCode, 401)
  t.equal(none.headers['www-authenticate'], 'Bearer realm="moltbridge"')
  t.match(none.json(), { statusCode: 401, error: 'Unauthorized', message: /Authorization: Bearer/ })

  await refused(t, app, 'garbage', /malformed/)
  await refused(t, app, 'eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln', /malformed|invalid/)
  await refused(t, app, unsignedToken(), /algorithm not allowed/)
  await refused(t, app, await mint({}, { key: 'another-secret-0123456789abcdef' }), /signature/)
  await refused(t, app, await mint({}, { expiresIn: -60 }), /expired \(exp\)/)
  await refused(t, app, await mint({}, { notBefore: nowS() + 120 }), /not yet valid \(nbf\)/)
  await refused(t, app, await mint({ agent_id: undefined }), /"agent_id"/)
  await refused(t, app, await mint({ sub: undefined }), /"sub"/)
  await refused(t, app, await mint({ agent_id: ['x'] }), /"agent_id" must be/)
  await refused(t, app, await mint({}, { alg: 'HS512' }), /algorithm not allowed/)

  const basic = await call(app, { authorization: 'Basic dXNlcjpwYXNz' })
  t.equal(basic.statusCode, 401)
  t.match(basic.headers['www-authenticate'], /error="invalid_token"/)
  t.match(basic.json().message, /Bearer <token>/)
})

t.test('defect 16: a token without exp is refused unless JWT_REQUIRE_EXP=false; JWT_SECRET needs 32 bytes', async (t) => {
  const forever = await mint({ agent_id: 'agent-forever' }, { expiresIn: null })
  await refused(t, await buildTestApp(t, {}, { memory: true }), forever, /"exp"/)
  const lenient = await buildTestApp(t, { JWT_REQUIRE_EXP: 'false' }, { memory: true })
  t.equal((await call(lenient, bearer(forever))).statusCode, 201, 'accepted when JWT_REQUIRE_EXP=false')

  const short = 'x'.repeat(31)
  await t.rejects(buildTestApp(t, { JWT_SECRET: short }, { memory: true }), { name: 'ConfigError', message: /JWT_SECRET.*32 bytes/ })
  await t.rejects(buildTestApp(t, { JWT_SECRET: 's' }, { memory: true }), { name: 'ConfigError', message: /JWT_SECRET/ }, 'one character')
  const exact = 'y'.repeat(32)
  const app = await buildTestApp(t, { JWT_SECRET: exact }, { memory: true })
  t.equal((await call(app, bearer(await mint({}, { key: exact })))).statusCode, 201, '32 bytes are enough')
})

t.test('JWT_ALGORITHMS widens the allowlist; the clock tolerance forgives a little skew', async (t) => {
  const app = await buildTestApp(t, { JWT_ALGORITHMS: 'HS256,HS512', JWT_CLOCK_TOLERANCE_S: '30' })
  t.equal((await call(app, bearer(await mint({}, { alg: 'HS512' })))).statusCode, 201)
  t.equal((await call(app, bearer(await mint({}, { expiresIn: -10 })))).statusCode, 201, 'within tolerance')
  await refused(t, app, await mint({}, { expiresIn: -60 }), /expired/)
})

t.test('JWT_ISSUER and JWT_AUDIENCE are enforced when set', async (t) => {
  const app = await buildTestApp(t, { JWT_ISSUER: 'https://issuer.example', JWT_AUDIENCE: 'moltbridge' })
  const good = { issuer: 'https://issuer.example', audience: 'moltbridge' }
  t.equal((await call(app, bearer(await mint({}, good)))).statusCode, 201)
  await refused(t, app, await mint({}, { ...good, issuer: 'https://evil.example' }), /"iss"/)
  await refused(t, app, await mint({}, { ...good, audience: 'someone-else' }), /"aud"/)
  await refused(t, app, await mint({}, { audience: 'moltbridge' }), /"iss"/)
})

t.test('JWT_PUBLIC_KEY: RS256 and ES256 pass; key confusion and foreign keys are refused', async (t) => {
  const rsa = await keyPair('RS256')
  const app = await buildTestApp(t, { JWT_SECRET: undefined, JWT_PUBLIC_KEY: rsa.publicPem })
  t.equal((await call(app, bearer(await mint({}, { alg: 'RS256', key: rsa.privateKey })))).statusCode, 201)
  // The public key used as an HMAC secret: the classic algorithm confusion attack.
  await refused(t, app, await mint({}, { alg: 'HS256', key: rsa.publicPem }), /algorithm not allowed/)
  const other = await keyPair('RS256')
  await refused(t, app, await mint({}, { alg: 'RS256', key: other.privateKey }), /signature/)
  const pss = await keyPair('PS256')
  await refused(t, app, await mint({}, { alg: 'PS256', key: pss.privateKey }), /algorithm not allowed/)

  const ec = await keyPair('ES256')
  // One-line PEM with literal \n, as environment files often carry it.
  const ecApp = await buildTestApp(t, { JWT_SECRET: undefined, JWT_PUBLIC_KEY: ec.publicPem.replace(/\n/g, '\\n') })
  t.equal((await call(ecApp, bearer(await mint({}, { alg: 'ES256', key: ec.privateKey })))).statusCode, 201)
  await refused(t, ecApp, await mint({}, { alg: 'RS256', key: rsa.privateKey }), /signature|token/)
})

t.test('a bad key setting stops the start with a message naming the variable', async (t) => {
  // Memory stores: a start that fails half-way leaves no Redis connection behind.
  const memory = { memory: true }
  await t.rejects(buildTestApp(t, { JWT_SECRET: undefined, JWT_PUBLIC_KEY: 'not a pem' }, memory), {
    constructor: ConfigError,
    message: /JWT_PUBLIC_KEY/
  })
  const rsa = await keyPair('RS256')
  await t.rejects(buildTestApp(t, { JWT_SECRET: undefined, JWT_PUBLIC_KEY: rsa.publicPem, JWT_ALGORITHMS: 'HS256' }, memory), {
    constructor: ConfigError,
    message: /JWT_ALGORITHMS.*JWT_SECRET/
  })
})

t.test('JWT_JWKS_URL: keys from a real JWKS server; a new kid is picked up after the cooldown', async (t) => {
  const first = await keyPair('RS256', 'kid-1')
  const jwks = await startJwks(t, [first])
  const app = await buildTestApp(t, { JWT_SECRET: undefined, JWT_JWKS_URL: jwks.url, JWT_JWKS_COOLDOWN_MS: '300' })
  t.equal((await call(app, bearer(await mint({}, { alg: 'RS256', key: first.privateKey, kid: 'kid-1' })))).statusCode, 201)

  const second = await keyPair('ES256', 'kid-2')
  jwks.add(second)
  const token = await mint({}, { alg: 'ES256', key: second.privateKey, kid: 'kid-2' })
  let status = 0
  for (let i = 0; i < 50 && status !== 201; i++) {
    status = (await call(app, bearer(token))).statusCode
    if (status !== 201) await new Promise((r) => setTimeout(r, 100))
  }
  t.equal(status, 201, 'the rotated-in key verifies once the JWKS was refetched')

  const stranger = await keyPair('RS256', 'kid-unknown')
  await refused(t, app, await mint({}, { alg: 'RS256', key: stranger.privateKey, kid: 'kid-unknown' }), /kid/)
})

t.test('JWKS: a flood of unknown kids refetches at most once per cooldown; an unreachable JWKS is a 503', async (t) => {
  const key = await keyPair('RS256', 'kid-1')
  const jwks = await startJwks(t, [key])
  const app = await buildTestApp(t, { JWT_SECRET: undefined, JWT_JWKS_URL: jwks.url })
  t.equal((await call(app, bearer(await mint({}, { alg: 'RS256', key: key.privateKey, kid: 'kid-1' })))).statusCode, 201)
  const stranger = await keyPair('RS256', 'kid-x')
  for (let i = 0; i < 10; i++) {
    const res = await call(app, bearer(await mint({}, { alg: 'RS256', key: stranger.privateKey, kid: `kid-x${i}` })))
    t.equal(res.statusCode, 401)
  }
  t.ok(jwks.state.fetches <= 2, `JWKS fetched ${jwks.state.fetches} times for 11 tokens`)

  const down = await buildTestApp(t, { JWT_SECRET: undefined, JWT_JWKS_URL: 'http://127.0.0.1:1/jwks.json' })
  const res = await call(down, bearer(await mint({}, { alg: 'RS256', key: key.privateKey, kid: 'kid-1' })))
  t.equal(res.statusCode, 503)
  t.match(res.json(), { statusCode: 503, message: /signing keys/ })
})

t.test('public routes need no token, the others need a Bearer header; an unknown route stays 404', async (t) => {
  const app = await buildTestApp(t)
  for (const url of ['/healthz', '/docs/json', '/metrics']) {
    t.equal((await app.inject(url)).statusCode, 200, url)
  }
  const cookie = `mb_session=${await mint()}`
  for (const [method, url] of [['POST', '/v1/rating'], ['GET', '/v1/scores?items=a'], ['POST', '/v1/sse-tickets']] as const) {
    const res = await app.inject({ method, url, headers: { cookie } })
    t.equal(res.statusCode, 401, `${method} ${url} needs the header (a cookie is only for the stream)`)
    t.equal(res.headers['www-authenticate'], 'Bearer realm="moltbridge"')
  }
  t.equal((await app.inject('/nope')).statusCode, 404)
  t.equal((await app.inject({ url: '/nope', headers: bearer('garbage') })).statusCode, 404)
})

t.test('a JWT in the query string is refused with a hint to use a ticket', async (t) => {
  const app = await buildTestApp(t)
  const token = await mint()
  for (const query of [`access_token=${token}`, `token=${token}`, `x=${token}`]) {
    const res = await call(app, bearer(token), `/v1/sse-tickets?${query}`)
    t.equal(res.statusCode, 401)
    t.match(res.json().message, /query string.*ticket/)
    t.notMatch(res.body, token.split('.')[1])
  }
})

t.test('the verifier gives the principal: ids, scopes from scope or scp, expiry', async (t) => {
  const app = await buildTestApp(t, { JWT_SECRET: TEST_SECRET })
  const verifier = new JwtVerifier(app.config, app.log)
  const principal = await verifier.verify(await mint({ sub: 'u-9', agent_id: 'a-9', scope: 'ratings:all other' }))
  t.match(principal, { sub: 'u-9', agentId: 'a-9', scopes: ['ratings:all', 'other'], exp: Number })
  t.same((await verifier.verify(await mint({ scp: ['ratings:all'] }))).scopes, ['ratings:all'])
  await t.rejects(verifier.verify('garbage'), { statusCode: 401, message: /malformed/ })
})
