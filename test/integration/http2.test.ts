/**
 * The gateway serving HTTP/2 itself (HTTP2=true with TLS_CERT_FILE / TLS_KEY_FILE): SSE streams
 * over a Node http2 client, many on one connection, HTTP/1.1 on the same port, a clean close.
 * Browsers through nginx with TLS + http2: test/browser/http2.test.ts.
 */
import { connect, type ClientHttp2Session } from 'node:http2'
import { request } from 'node:https'
import { connect as tlsConnect } from 'node:tls'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { loadConfig } from '../../src/config.js'
import { buildApp } from '../../src/app.js'
import { buildTestApp, TEST_SECRET, type Teardown } from '../helpers/app.js'
import { metricValue } from '../helpers/metrics.js'
import { score } from '../helpers/sse.js'
import { selfSignedCertificate } from '../helpers/tls.js'
import { mint } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const STREAM = '/events/personalized-rating'

/** One HTTP/2 stream of SSE: its response headers and everything received. */
function h2Stream(session: ClientHttp2Session, headers: Record<string, string>) {
  const req = session.request({ ':path': STREAM, accept: 'text/event-stream', ...headers })
  const got = { headers: {} as Record<string, unknown>, body: '', closed: false, close: () => req.close() }
  req.setEncoding('utf8')
  req.on('response', (h) => (got.headers = h))
  req.on('data', (chunk: string) => (got.body += chunk))
  req.on('close', () => (got.closed = true))
  return got
}

async function http2Gateway(t: Teardown, env: Record<string, string> = {}) {
  const tls = await selfSignedCertificate(t)
  const app = await buildTestApp(t, { HTTP2: 'true', TLS_CERT_FILE: tls.certFile, TLS_KEY_FILE: tls.keyFile, SSE_HEARTBEAT_MS: '500', ...env })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  return { app, tls, url: `https://127.0.0.1:${port}` }
}

t.test('ten SSE streams share one HTTP/2 connection; each gets its events, in order', async (t) => {
  const warnings: string[] = []
  const onWarning = (warning: Error) => warnings.push(warning.message)
  process.on('warning', onWarning)
  t.teardown(() => process.off('warning', onWarning))
  const { app, tls, url } = await http2Gateway(t)
  const session = connect(url, { ca: tls.cert })
  t.teardown(() => session.destroy())
  const token = await mint({ sub: 'h2-user', agent_id: 'h2-agent' })
  const streams = Array.from({ length: 10 }, () => h2Stream(session, { authorization: `Bearer ${token}` }))
  await waitFor('ten streams open', () => streams.every((s) => s.body.includes('retry:')))
  t.equal(await metricValue(app.metrics.sseOpen), 10, 'ten streams on the gateway')
  for (const stream of streams) {
    t.equal(stream.headers[':status'], 200)
    t.match(stream.headers['content-type'], /text\/event-stream/)
    t.notOk(stream.headers.connection, 'no Connection header (HTTP/2 forbids it)')
  }
  const ids: string[] = []
  for (let i = 0; i < 5; i++) ids.push(await app.events.publish(score('h2-user', `i-${i}`, 1, i), 'rest'))
  await waitFor('every stream has the five events', () => streams.every((s) => ids.every((id) => s.body.includes(`id: ${id}\n`))))
  for (const stream of streams) {
    const received = [...stream.body.matchAll(/^id: (.+)$/gm)].map((m) => m[1])
    t.same(received.slice(-5), ids, 'in order')
  }
  await waitFor('a heartbeat', () => streams.every((s) => s.body.includes(': heartbeat')))
  t.same(warnings, [], 'no header HTTP/2 drops with a warning (Connection)')

  // A client that goes away ends its stream on the gateway.
  streams[0].close()
  await waitFor('nine open', async () => (await metricValue(app.metrics.sseOpen)) === 9)
  t.pass('a closed HTTP/2 stream is noticed')
})

t.test('streams reset by the client while the gateway still opens them leave nothing behind', async (t) => {
  const { app, tls, url } = await http2Gateway(t)
  const session = connect(url, { ca: tls.cert })
  t.teardown(() => session.destroy())
  const token = await mint({ sub: 'h2-rst', agent_id: 'h2-rst' })
  const since = await app.events.publish(score('h2-rst', 'r', 1), 'rest')
  // The reset reaches the gateway while it verifies the token and reads the history.
  for (let i = 0; i < 10; i++) h2Stream(session, { authorization: `Bearer ${token}`, 'last-event-id': since }).close()
  const witness = h2Stream(session, { authorization: `Bearer ${await mint({ sub: 'h2-rst', agent_id: 'h2-witness' })}` })
  await waitFor('the witness stream open', () => witness.body.includes('retry:'))
  await waitFor('only the witness stream left open', async () => (await metricValue(app.metrics.sseOpen)) === 1, 20_000).catch(
    async (err: Error) => t.fail(`${err.message}: ${await metricValue(app.metrics.sseOpen)} open`)
  )
  t.equal(await metricValue(app.metrics.sseOpen), 1, 'every reset stream was let go')
})

t.test('HTTP/1.1 clients (probes, curl) are served on the same TLS port', async (t) => {
  const { tls, url } = await http2Gateway(t)
  const res = await new Promise<{ status?: number; version: string; body: string }>((resolve, reject) => {
    const req = request(`${url}/healthz`, { ca: tls.cert }, (res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode, version: res.httpVersion, body }))
    })
    req.on('error', reject)
    req.end()
  })
  t.equal(res.status, 200)
  t.equal(res.version, '1.1')
})

t.test('close() with HTTP/2 streams open: they are drained and the server closes', async (t) => {
  const { app, tls, url } = await http2Gateway(t, { DRAIN_MS: '100' })
  const session = connect(url, { ca: tls.cert })
  t.teardown(() => session.destroy())
  const stream = h2Stream(session, { authorization: `Bearer ${await mint({ sub: 'h2-c', agent_id: 'h2-c' })}` })
  await waitFor('open', () => stream.body.includes('retry:'))
  await app.close()
  await waitFor('the client saw its stream end', () => stream.closed)
  t.match(stream.body, /retry: \d+\n\n$/, 'told to reconnect before the end')
})

t.test('HTTPS without HTTP2 keeps REQUEST_TIMEOUT_MS: a body trickled over TLS is cut with 408', async (t) => {
  const tls = await selfSignedCertificate(t)
  const app = await buildTestApp(t, { TLS_CERT_FILE: tls.certFile, TLS_KEY_FILE: tls.keyFile, REQUEST_TIMEOUT_MS: '1000' }, { memory: true })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const socket = tlsConnect({ port: (app.server.address() as AddressInfo).port, host: '127.0.0.1', ca: tls.cert, servername: 'localhost' })
  t.teardown(() => socket.destroy())
  let received = ''
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => (received += chunk))
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()))
  const token = await mint({ sub: 'tls-slow', agent_id: 'tls-slow' })
  socket.write(`POST /v1/rating HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 10000\r\nAuthorization: Bearer ${token}\r\n\r\n`)
  let sent = 0
  const timer = setInterval(() => {
    if (!socket.destroyed) socket.write('{', () => sent++)
  }, 250)
  t.teardown(() => clearInterval(timer))
  // Far above REQUEST_TIMEOUT_MS and Node's check interval; without the timeouts, Node's defaults cut it after 90 s.
  const cut = await Promise.race([closed.then(() => true), new Promise<false>((resolve) => setTimeout(resolve, 20_000, false).unref())])
  t.ok(cut && sent < 10000, `closed by the server after ${sent} body bytes`)
  t.match(received, /^HTTP\/1\.1 408/, 'told 408 Request Timeout')
})

t.test('HTTP2 needs TLS; TLS files must be readable: a ConfigError naming the variable', async (t) => {
  t.throws(() => loadConfig({ JWT_SECRET: TEST_SECRET, HTTP2: 'true' }), { name: 'ConfigError', message: /HTTP2=true needs TLS_CERT_FILE and TLS_KEY_FILE/ })
  t.throws(() => loadConfig({ JWT_SECRET: TEST_SECRET, TLS_CERT_FILE: '/x.pem' }), { name: 'ConfigError', message: /TLS_CERT_FILE and TLS_KEY_FILE/ })
  const tls = await selfSignedCertificate(t)
  const config = loadConfig({ JWT_SECRET: TEST_SECRET, LOG_LEVEL: 'silent', TLS_CERT_FILE: tls.certFile, TLS_KEY_FILE: '/nonexistent/key.pem' })
  await t.rejects(buildApp(config), { name: 'ConfigError', message: /TLS_KEY_FILE cannot be read \(\/nonexistent\/key.pem: ENOENT\)/ })
})
