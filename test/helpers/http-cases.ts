import fc from 'fast-check'
import type { FastifyInstance } from 'fastify'

/** One fuzzed request. */
export interface Case {
  method: string
  path: string
  headers: Record<string, string>
  body?: Buffer
  /** The declared Content-Length is more than is sent: only the request timeout can end it. */
  short?: boolean
  /** Open the stream with a fresh ticket in the query. */
  ticket?: boolean
}

export interface Route {
  path: string
  methods: string[]
}

/** Every route of the app, from Fastify's own route tree (`*` stands for any rest of a path). */
export function routesOf(app: FastifyInstance): Route[] {
  const found: Route[] = []
  const parents: string[] = []
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^(.*?)[├└]── (.*?)(?: \(([^)]*)\))?$/.exec(line)
    if (!match) continue
    const depth = match[1].length / 4
    const path = (parents[depth - 1] ?? '') + match[2]
    parents[depth] = path
    if (match[3]) found.push({ path, methods: match[3].split(', ') })
  }
  return found
}

/** Header values Node's client accepts (it refuses control characters itself). */
const headerSafe = (value: string) => value.replace(/[^\t\x20-\x7e\x80-\xff]/g, '')

export interface CaseSources {
  routes: Route[]
  /** A valid token of `user`. */
  token: string
  /** Tokens of every kind: valid, expired, forged, without exp, malformed claims, `alg: none`. */
  tokens: string[]
  user: string
  bodyLimit: number
}

/**
 * Fuzzed requests: half of them anything at all (any route, method, path, query, header, body),
 * the rest aimed at the contract's routes (a rating with its fields pushed to their bounds, the
 * reads and the stream with random queries), mostly from an authenticated caller.
 */
export function httpCases({ routes, token, tokens, user, bodyLimit }: CaseSources): fc.Arbitrary<Case> {
  const text = fc.oneof(
    { arbitrary: fc.string({ maxLength: 40 }), weight: 3 },
    { arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }), weight: 3 },
    { arbitrary: fc.string({ unit: 'binary', maxLength: 20 }), weight: 3 },
    {
      arbitrary: fc.constantFrom('', ' ', '%', '%zz', '%00', '%ff%fe', '..', '../..', '__proto__', 'constructor', 'prototype', ',,,', 'a,b,c', '1-0', '99999999999999-0', token, 'null', '\u0000', '😀'.repeat(50)),
      weight: 3
    },
    { arbitrary: fc.integer({ min: 1, max: 20_000 }).map((n) => 'x'.repeat(n)), weight: 1 }
  )
  const encoded = fc.oneof({ arbitrary: text.map(encodeURIComponent), weight: 4 }, { arbitrary: text.map(headerSafe).map((s) => s.replace(/[\s#]/g, '')), weight: 1 })
  const queryKey = fc.oneof(fc.constantFrom('items', 'lastEventId', 'ticket', 'token', 'access_token', '__proto__', 'constructor', 'hasOwnProperty', 'items[]', 'TICKET'), encoded)
  const query = fc
    .array(fc.tuple(queryKey, fc.option(encoded, { nil: undefined })), { maxLength: 5 })
    .map((pairs) => (pairs.length ? `?${pairs.map(([key, value]) => (value === undefined ? key : `${key}=${value}`)).join('&')}` : ''))
  const route = fc.constantFrom(...routes)
  const path = fc.oneof(
    { arbitrary: route.map((r) => r.path.replace('*', 'index.css')), weight: 6 },
    { arbitrary: fc.tuple(route, encoded).map(([r, junk]) => `${r.path.replace('*', '')}/${junk}`), weight: 1 },
    { arbitrary: route.map((r) => r.path.toUpperCase()), weight: 1 },
    { arbitrary: route.map((r) => `/${r.path}`), weight: 1 },
    { arbitrary: route.map((r) => r.path.replace(/\//g, '%2F')), weight: 1 },
    { arbitrary: encoded.map((junk) => `/${junk}`), weight: 1 }
  )
  const method = fc.oneof(
    { arbitrary: route.chain((r) => fc.constantFrom(...r.methods)), weight: 3 },
    { arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND'), weight: 1 }
  )
  const mutatedToken = fc
    .tuple(fc.nat({ max: token.length - 1 }), fc.constantFrom('A', '.', '-', '_', '=', ' ', '%'))
    .map(([at, char]) => `${token.slice(0, at)}${char}${token.slice(at + 1)}`)
  const authorization = fc.oneof(
    { arbitrary: fc.constant(`Bearer ${token}`), weight: 6 },
    { arbitrary: fc.constantFrom(...tokens).map((jwt) => `Bearer ${jwt}`), weight: 2 },
    { arbitrary: mutatedToken.map((jwt) => `Bearer ${jwt}`), weight: 1 },
    { arbitrary: fc.constantFrom('Bearer', 'Bearer ', 'Basic dXNlcjpwYXNz', `bearer   ${token}`, `Bearer ${token} extra`, token), weight: 1 },
    { arbitrary: text.map(headerSafe), weight: 1 }
  )

  // --- bodies: a valid rating with its fields replaced or added, or anything at all
  const jsonText = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)),
    fc.constantFrom('1e400', '-1e400', '1e300', '-0', '4102444800', '4102444801', '1.5', '"1721234567"', 'true', 'null', '[]', '{}', `"${'u'.repeat(200)}"`, '"\\u0000"', '"\\ud800"', '{"__proto__":{"polluted":1}}')
  )
  const field = fc.oneof(
    fc.constantFrom('user_id', 'item_id', 'timestamp', 'rating', 'agent_id', '__proto__', 'constructor', 'prototype', 'extra', ''),
    fc.string({ unit: 'grapheme', maxLength: 10 })
  )
  const rating: Record<string, string> = { user_id: `"${user}"`, item_id: '"item-1"', timestamp: '1721234567', rating: '4' }
  /** Values at and around each field's bounds, as JSON text. */
  const id = (n: number) => JSON.stringify('i'.repeat(n))
  const edges: Record<string, string[]> = {
    user_id: [`"${user}"`, '"someone-else"', '""', id(128), id(129), '"\u0000"', '"😀"', '"__proto__"'],
    item_id: ['"item-1"', '""', id(128), id(129), '"a,b"', '"\ud800"', '"__proto__"', '"constructor"'],
    timestamp: ['0', '-1', '4102444800', '4102444801', '1e300', '1.5', '-0', '9007199254740993', '"1721234567"'],
    rating: ['0', '5', '-0', '5.000000001', '-0.1', '1e400', '1e-400', '4.7', '"4"', 'true']
  }
  const fieldValue = (name: string) => (Object.hasOwn(edges, name) ? fc.oneof(fc.constantFrom(...edges[name]), jsonText) : jsonText)
  const ratingText = fc
    .array(field.chain((name) => fc.tuple(fc.constant(name), fieldValue(name))), { maxLength: 3 })
    .map((changes) => {
      // A change to a contract field replaces it; any other key is added (twice over, at times).
      const own = (key: string) => Object.hasOwn(rating, key)
      const fields = Object.entries({ ...rating, ...Object.fromEntries(changes.filter(([key]) => own(key))) })
      const added = changes.filter(([key]) => !own(key))
      return `{${fields.concat(added).map(([key, value]) => `${JSON.stringify(key)}:${value}`).join(',')}}`
    })
  const body = fc.oneof(
    { arbitrary: fc.constant(JSON.stringify({ user_id: user, item_id: 'item-1', timestamp: 1721234567, rating: 4 })), weight: 3 },
    { arbitrary: ratingText, weight: 5 },
    { arbitrary: jsonText, weight: 2 },
    { arbitrary: fc.string({ unit: 'grapheme', maxLength: 200 }), weight: 1 },
    { arbitrary: fc.integer({ min: 1, max: 5000 }).map((depth) => `${'['.repeat(depth)}${']'.repeat(depth)}`), weight: 1 },
    { arbitrary: fc.integer({ min: bodyLimit - 100, max: 4 * bodyLimit }).map((n) => `{"user_id":"${'x'.repeat(n)}"}`), weight: 1 }
  )
  const bodyBytes = fc.oneof(
    { arbitrary: body.map((s) => Buffer.from(s)), weight: 8 },
    { arbitrary: fc.uint8Array({ maxLength: 500 }).map((bytes) => Buffer.from(bytes)), weight: 1 },
    { arbitrary: body.map((s) => Buffer.from(s, 'utf16le')), weight: 1 }
  )
  const contentType = fc.oneof(
    { arbitrary: fc.constant('application/json'), weight: 6 },
    {
      arbitrary: fc.constantFrom(
        'application/json; charset=utf-8',
        'application/json; charset=utf-16le',
        'APPLICATION/JSON',
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=xyz',
        'application/octet-stream',
        'application/json;',
        'application/*'
      ),
      weight: 2
    },
    { arbitrary: text.map(headerSafe), weight: 1 }
  )
  const headerText = fc.oneof({ arbitrary: text.map(headerSafe), weight: 9 }, { arbitrary: fc.constant('h'.repeat(20_000)), weight: 1 })
  const extraHeader = fc.oneof(
    fc.tuple(fc.constant('content-encoding'), fc.constantFrom('gzip', 'deflate', 'br', 'identity', 'x-nonsense')),
    fc.tuple(fc.constant('last-event-id'), fc.oneof(fc.constantFrom('1-0', '0-0', '99999999999999-999999999999999', '1721234567000-0'), headerText)),
    fc.tuple(fc.constant('cookie'), fc.oneof(fc.constant(`mb_session=${token}`), headerText.map((value) => `mb_session=${value}`), headerText)),
    fc.tuple(fc.constant('origin'), fc.constantFrom('https://evil.example', 'null', 'http://127.0.0.1')),
    fc.tuple(fc.constant('x-forwarded-for'), fc.constantFrom('1.2.3.4', '::1', 'garbage', '1.2.3.4, 5.6.7.8')),
    fc.tuple(fc.constant('if-none-match'), fc.oneof(fc.constant('*'), headerText)),
    fc.tuple(fc.constant('accept'), fc.constantFrom('text/event-stream', 'application/json', '*/*', 'text/html')),
    fc.tuple(fc.constant('expect'), fc.constantFrom('100-continue', '100-continue', '100-continue', 'something-else')),
    fc.tuple(fc.constant('range'), fc.constantFrom('bytes=0-10', 'bytes=-1', 'bytes=999999999-')),
    fc.tuple(fc.constant('x-http-method-override'), fc.constantFrom('DELETE', 'GET')),
    fc.tuple(fc.constantFrom('x-custom', '__proto__', 'constructor'), headerText)
  )
  const extraHeaders = fc.array(extraHeader, { maxLength: 3 }).map((pairs) => Object.fromEntries(pairs))
  const anything = fc.record({
    method,
    path,
    query,
    authorization: fc.option(authorization, { nil: undefined, freq: 6 }),
    contentType: fc.option(contentType, { nil: undefined, freq: 5 }),
    extra: extraHeaders,
    body: fc.option(bodyBytes, { nil: undefined, freq: 3 }),
    short: fc.integer({ min: 0, max: 19 }).map((n) => n === 0),
    ticket: fc.integer({ min: 0, max: 9 }).map((n) => n < 3)
  })
  // The contract's routes get most of the cases: a rating with its fields pushed to their bounds,
  // and the reads and the stream with random queries, mostly from an authenticated caller.
  const focused = fc.record({
    method: fc.constant('POST'),
    path: fc.constant('/v1/rating'),
    query: fc.oneof({ arbitrary: fc.constant(''), weight: 5 }, { arbitrary: query, weight: 1 }),
    authorization: fc.oneof({ arbitrary: fc.constant(`Bearer ${token}`), weight: 8 }, { arbitrary: authorization, weight: 1 }),
    contentType: fc.oneof({ arbitrary: fc.constant('application/json'), weight: 8 }, { arbitrary: contentType, weight: 1 }),
    extra: fc.constant({}),
    body: ratingText.map((text) => Buffer.from(text)),
    short: fc.constant(false),
    ticket: fc.constant(false)
  })
  const reads = fc.record({
    method: fc.constantFrom('GET', 'GET', 'HEAD'),
    path: fc.constantFrom('/v1/scores', '/events/personalized-rating'),
    query,
    authorization: fc.option(fc.oneof({ arbitrary: fc.constant(`Bearer ${token}`), weight: 8 }, { arbitrary: authorization, weight: 1 }), { nil: undefined, freq: 4 }),
    contentType: fc.constant(undefined),
    extra: extraHeaders,
    body: fc.constant(undefined),
    short: fc.constant(false),
    ticket: fc.integer({ min: 0, max: 3 }).map((n) => n === 0)
  })
  return fc
    .oneof({ arbitrary: anything, weight: 3 }, { arbitrary: focused, weight: 2 }, { arbitrary: reads, weight: 1 })
    .map(({ method, path, query, authorization, contentType, extra, body, short, ticket }) => {
      const headers: Record<string, string> = { ...extra }
      if (authorization !== undefined) headers.authorization = authorization
      if (contentType !== undefined) headers['content-type'] = contentType
      if (body) headers['content-length'] = String(body.length + (short ? 10 : 0))
      return { method, path: `${path}${query}`, headers, body, short: short && body !== undefined, ticket: ticket && path.startsWith('/events') }
    })
}
