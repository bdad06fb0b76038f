/** GET /client.js and GET /client.d.ts: served in every mode, importable from any origin, cacheable. */
import { readFile } from 'node:fs/promises'
import t from 'tap'
import { buildTestApp } from '../helpers/app.js'

const FILES = [
  { url: '/client.js', file: '../../public/client.js', type: /^text\/javascript; charset=utf-8$/ },
  { url: '/client.d.ts', file: '../../public/client.d.ts', type: /^application\/typescript; charset=utf-8$/ }
]

t.test('served without a token, in a gateway that is not in demo mode, with CORS_ORIGINS unset', async (t) => {
  const app = await buildTestApp(t, {}, { memory: true })
  for (const { url, file, type } of FILES) {
    const res = await app.inject({ url, headers: { origin: 'https://elsewhere.example' } })
    t.equal(res.statusCode, 200, url)
    t.match(res.headers['content-type'], type, `${url}: a module script needs a JavaScript media type`)
    t.equal(res.body, await readFile(new URL(file, import.meta.url), 'utf8'), `${url}: the repository's file`)
    t.equal(res.headers['access-control-allow-origin'], '*', `${url}: any page may import it`)
    t.notOk(res.headers['access-control-allow-credentials'], `${url}: without credentials`)
    t.equal(res.headers['x-content-type-options'], 'nosniff')
    t.match(res.headers['cache-control'], /public, max-age=300/)
    t.ok(res.headers.etag, `${url}: ETag`)

    const again = await app.inject({ url, headers: { 'if-none-match': String(res.headers.etag) } })
    t.equal(again.statusCode, 304, `${url}: revalidated by ETag`)
    t.equal(again.body, '')
    const head = await app.inject({ method: 'HEAD', url })
    t.equal(head.statusCode, 200)
    t.equal(head.body, '')
  }
})

t.test('with CORS_ORIGINS set, the client files stay open to every origin (credentials never)', async (t) => {
  const app = await buildTestApp(t, { CORS_ORIGINS: 'https://app.example.com' }, { memory: true })
  const res = await app.inject({ url: '/client.js', headers: { origin: 'https://app.example.com' } })
  t.equal(res.headers['access-control-allow-origin'], '*')
  t.notOk(res.headers['access-control-allow-credentials'])
  t.equal((await app.inject({ url: '/public/client.js' })).statusCode, 404, 'nothing else of public/ is served')
  t.equal((await app.inject({ url: '/client.js/../package.json' })).statusCode, 404)
})
