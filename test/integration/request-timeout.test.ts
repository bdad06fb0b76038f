import { connect, type Socket } from 'node:net'
import t from 'tap'
import { buildTestApp, listen } from '../helpers/app.js'
import { openStream } from '../helpers/sse.js'
import { mint } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

/** Far above REQUEST_TIMEOUT_MS (1 s) and the server's check interval: still open by then means never cut. */
const CUT_WITHIN_MS = 20_000

interface Trickle {
  /** What the server answered, if anything. */
  received(): string
  closed: Promise<void>
  /** Body bytes sent before the server closed the socket. */
  sent(): number
}

/** A POST whose body (declared 10000 bytes) arrives one byte every 250 ms: a slow client holding a socket. */
function trickle(t: { teardown(fn: () => void): void }, port: number, authorization: string | null): Trickle {
  const socket: Socket = connect(port, '127.0.0.1')
  let received = ''
  let sent = 0
  socket.setEncoding('utf8')
  socket.on('data', (chunk: string) => (received += chunk))
  socket.on('error', () => {})
  const head = [
    'POST /v1/rating HTTP/1.1',
    'Host: 127.0.0.1',
    'Content-Type: application/json',
    'Content-Length: 10000',
    ...(authorization ? [`Authorization: ${authorization}`] : []),
    '',
    ''
  ].join('\r\n')
  socket.write(head)
  const timer = setInterval(() => {
    if (socket.destroyed) return
    socket.write('{')
    sent++
  }, 250)
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  void closed.then(() => clearInterval(timer))
  t.teardown(() => {
    clearInterval(timer)
    socket.destroy()
  })
  return { received: () => received, closed, sent: () => sent }
}

t.test('defect 5: a request that does not arrive within REQUEST_TIMEOUT_MS is cut, also after its 401; an open stream is not', async (t) => {
  const app = await buildTestApp(t, { REQUEST_TIMEOUT_MS: '1000', SSE_HEARTBEAT_MS: '200' }, { memory: true })
  const base = await listen(app)
  const port = Number(new URL(base).port)
  const token = await mint({ sub: 'slow', agent_id: 'ag-slow' })

  const stream = await openStream(t, `${base}/events/personalized-rating`, { authorization: `Bearer ${token}` })
  t.equal(stream.status, 200)

  const authorized = trickle(t, port, `Bearer ${token}`)
  const anonymous = trickle(t, port, null)
  const cut = await Promise.race([
    Promise.all([authorized.closed, anonymous.closed]).then(() => true),
    new Promise<false>((resolve) => setTimeout(resolve, CUT_WITHIN_MS, false).unref())
  ])
  t.ok(cut, 'both slow sockets were closed by the server')
  t.ok(authorized.sent() < 10000 && anonymous.sent() < 10000, 'before their bodies were complete')
  t.match(anonymous.received(), /^HTTP\/1\.1 401/, 'the anonymous one had its 401 first, then was cut all the same')
  t.match(authorized.received(), /^HTTP\/1\.1 408/, 'the other one is told 408 Request Timeout')

  // The stream outlived the slow requests: 10 heartbeats (2 s, twice the timeout) after they were cut.
  const heartbeats = () => stream.messages.filter((message) => message.comment !== undefined).length
  const seen = heartbeats()
  await waitFor('ten more heartbeats on the stream', () => heartbeats() >= seen + 10)
  let ended = false
  void stream.ended.then(() => (ended = true))
  await new Promise((resolve) => setImmediate(resolve))
  t.notOk(ended, 'the SSE stream is still open: streams are exempt once open')
})
