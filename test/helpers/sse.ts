import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request, type IncomingMessage } from 'node:http'
import type { Teardown } from './app.js'

/** One parsed SSE message; `comment` set for `:` lines, which the browser never shows. */
export interface SseMessage {
  id?: string
  event?: string
  data?: string
  retry?: number
  comment?: string
}

export interface SseClient {
  status: number
  headers: IncomingMessage['headers']
  /** Every message so far, in order. */
  messages: SseMessage[]
  /** Body of a refused (non-200) stream. */
  body: string
  /** Resolves once the server ended the stream. */
  ended: Promise<void>
  /** Data messages (no `event:` field) parsed as JSON, with their ids. */
  events(): { id: string; data: unknown }[]
  /** Waits (bounded polling) until `predicate` holds over the messages. */
  waitFor(predicate: (messages: SseMessage[]) => boolean, timeoutMs?: number): Promise<void>
  close(): void
}

/** Parses an SSE body (WHATWG rules, enough for tests): fields until a blank line. */
export function parser(onMessage: (message: SseMessage) => void) {
  let rest = ''
  let current: SseMessage = {}
  return (chunk: string) => {
    rest += chunk
    const lines = rest.split(/\r?\n/)
    rest = lines.pop() ?? ''
    for (const line of lines) {
      if (line === '') {
        if (Object.keys(current).length) onMessage(current)
        current = {}
        continue
      }
      const colon = line.indexOf(':')
      const field = colon === -1 ? line : line.slice(0, colon)
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '')
      if (field === '') current.comment = line.slice(1)
      else if (field === 'data') current.data = current.data === undefined ? value : `${current.data}\n${value}`
      else if (field === 'retry') current.retry = Number(value)
      else if (field === 'id' || field === 'event') current[field] = value
    }
  }
}

/** Opens an SSE stream with raw HTTP; closed when the test ends. */
export function openStream(t: Teardown, url: string, headers: Record<string, string> = {}): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      res.setEncoding('utf8')
      let endedResolve: () => void = () => {}
      const client: SseClient = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        messages: [],
        body: '',
        ended: new Promise((r) => (endedResolve = r)),
        events: () =>
          client.messages
            .filter((m) => m.data !== undefined && m.event === undefined)
            .map((m) => ({ id: m.id ?? '', data: JSON.parse(m.data ?? 'null') as unknown })),
        async waitFor(predicate, timeoutMs = 10000) {
          const deadline = Date.now() + timeoutMs
          while (!predicate(client.messages)) {
            if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(client.messages)}`)
            await new Promise((r) => setTimeout(r, 20))
          }
        },
        close: () => req.destroy()
      }
      const parse = parser((m) => client.messages.push(m))
      res.on('data', (chunk: string) => (client.status === 200 ? parse(chunk) : (client.body += chunk)))
      res.on('close', () => endedResolve())
      res.on('error', () => endedResolve())
      t.teardown(() => req.destroy())
      resolve(client)
    })
    req.on('error', reject)
    req.end()
  })
}

/** A BUCKETS_FILE whose delivery policy is `delivery` (others generous), removed when the test ends. */
export async function bucketsFile(t: Teardown, delivery: { capacity: number; refill_rate: number }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mb-buckets-'))
  const policy = (action: string, limits: { capacity: number; refill_rate: number }) => ({
    action,
    bucket_name: `test-${action}`,
    key_selector: 'jwt.claims.agent_id',
    ...limits
  })
  const big = { capacity: 100000, refill_rate: 100000 }
  const file = join(dir, 'buckets.json')
  await writeFile(file, JSON.stringify([policy('rest', big), policy('read', big), policy('forward', big), policy('delivery', delivery)]))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return file
}

/** A score event for tests. */
export function score(user: string, item: string, rating: number, timestamp = 1721234567) {
  return { user_id: user, item_id: item, rating, timestamp }
}
