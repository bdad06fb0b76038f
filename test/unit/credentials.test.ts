import t from 'tap'
import { allowedAlgorithms, isExpired, jwtQueryParam, principalFromClaims, scopesOf } from '../../src/auth/credentials.js'

t.test('scopes come from `scope` (space-separated) or `scp` (array or string)', async (t) => {
  t.same(scopesOf({ scope: 'ratings:all  read' }), ['ratings:all', 'read'])
  t.same(scopesOf({ scp: ['ratings:all', 7, ''] }), ['ratings:all'])
  t.same(scopesOf({ scp: 'a b' }), ['a', 'b'])
  t.same(scopesOf({}), [])
})

t.test('a principal needs sub and agent_id, and the error names the claim', async (t) => {
  const p = principalFromClaims({ sub: 'u', agent_id: 'a', exp: 10, scope: 'x' })
  t.same({ sub: p.sub, agentId: p.agentId, exp: p.exp, scopes: p.scopes }, { sub: 'u', agentId: 'a', exp: 10, scopes: ['x'] })
  t.throws(() => principalFromClaims({ agent_id: 'a' }), /"sub"/)
  t.throws(() => principalFromClaims({ sub: 'u' }), /"agent_id"/)
  t.throws(() => principalFromClaims({ sub: 'u', agent_id: 42 }), /"agent_id" must be a non-empty string/)
  t.throws(() => principalFromClaims({ sub: '', agent_id: 'a' }), /"sub"/)
  t.throws(() => principalFromClaims({ sub: 'u'.repeat(129), agent_id: 'a' }), /"sub"/)
})

t.test('expiry allows the clock tolerance; no exp never expires', async (t) => {
  const p = principalFromClaims({ sub: 'u', agent_id: 'a', exp: 100 })
  t.equal(isExpired(p, 99, 0), false)
  t.equal(isExpired(p, 100, 0), true)
  t.equal(isExpired(p, 104, 5), false)
  t.equal(isExpired(principalFromClaims({ sub: 'u', agent_id: 'a' }), 1e12, 0), false)
})

t.test('a JWT in the query string is found by name or by shape, items lists are not', async (t) => {
  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln'
  t.equal(jwtQueryParam({ access_token: 'x' }), 'access_token')
  t.equal(jwtQueryParam({ Token: 'x' }), 'Token')
  t.equal(jwtQueryParam({ auth: jwt }), 'auth')
  t.equal(jwtQueryParam({ items: ['a', jwt] }), 'items')
  t.equal(jwtQueryParam({ items: 'a.b.c,item.v1.x', ticket: 'abc', lastEventId: '1-0' }), undefined)
  t.equal(jwtQueryParam({ next: `https://example.com/cb?t=${jwt}` }), 'next', 'a JWT inside a longer value')
  const spaced = `${Buffer.from('{ "alg": "HS256" }').toString('base64url')}.e30.c2ln`
  t.equal(jwtQueryParam({ q: spaced }), 'q', 'a header with whitespace is a JOSE header too')
  t.equal(jwtQueryParam({ host: 'www.example-domain.com', v: '1.20.3-rc.1' }), undefined, 'host names and versions are not JWTs')
})

t.test('allowed algorithms: defaults per key source, never HMAC without a secret', async (t) => {
  t.same(allowedAlgorithms(undefined, { secret: true, publicKey: false }), ['HS256'])
  t.same(allowedAlgorithms(undefined, { secret: false, publicKey: true }), ['RS256', 'ES256'])
  t.same(allowedAlgorithms(undefined, { secret: true, publicKey: true }), ['HS256', 'RS256', 'ES256'])
  t.same(allowedAlgorithms('RS256,EdDSA', { secret: false, publicKey: true }), ['RS256', 'EdDSA'])
  t.throws(() => allowedAlgorithms('HS256', { secret: false, publicKey: true }), /HS256 needs JWT_SECRET/)
  t.throws(() => allowedAlgorithms('RS256', { secret: true, publicKey: false }), /RS256 needs JWT_PUBLIC_KEY/)
  t.throws(() => allowedAlgorithms('none', { secret: true, publicKey: false }), /none is not a supported/)
})
