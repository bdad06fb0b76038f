import { request } from 'node:http'
import type { FeedRating } from '../../src/rating.js'
import type { Teardown } from './app.js'
import { parser } from './sse.js'
import { ratingKey, type Subscriber } from './subscribers.js'
import { mint } from './tokens.js'
import { waitFor } from './wait.js'

export interface ResumingSubscriber extends Subscriber {
  /** `gap` events received (the history no longer held what the stream missed). */
  gaps: number
  /** Stream requests refused, by status (connection errors counted as 0). */
  refused: Map<number, number>
}

export interface ResumingOptions {
  /** Base URLs of the replicas that may be up now: each (re)connect tries the next one. */
  targets: () => string[]
  /** Index of the first target tried (spreads subscribers over replicas). */
  first?: number
  /** No byte (heartbeats included) for this long: the stream is taken for dead and reopened. */
  idleMs?: number
  /** Pause between a lost stream and the next attempt. */
  retryMs?: number
}

/**
 * One SSE stream for `user` that resumes by itself: whenever its stream ends, errors, stays
 * silent or is refused, it reconnects with Last-Event-ID to the next replica of `targets()`
 * (whichever is up then). Open once this resolves; stopped when the test ends.
 */
export async function resumingSubscriber(t: Teardown, user: string, agent: string, options: ResumingOptions): Promise<ResumingSubscriber> {
  const { targets, idleMs = 5000, retryMs = 200 } = options
  const token = await mint({ sub: user, agent_id: agent }, { expiresIn: 600 })
  const sub: ResumingSubscriber = { user, events: [], opens: 0, gaps: 0, refused: new Map() }
  const refuse = (status: number) => sub.refused.set(status, (sub.refused.get(status) ?? 0) + 1)
  let lastId: string | undefined
  let turn = options.first ?? 0
  let stopped = false
  let current: { destroy(): void } | null = null

  const session = (base: string) =>
    new Promise<void>((resolve) => {
      let lastByte = Date.now()
      const headers: Record<string, string> = { accept: 'text/event-stream', authorization: `Bearer ${token}` }
      if (lastId !== undefined) headers['last-event-id'] = lastId
      const req = request(`${base}/events/personalized-rating`, { headers }, (res) => {
        if (res.statusCode !== 200) {
          refuse(res.statusCode ?? 0)
          res.resume()
          res.on('close', done)
          return
        }
        sub.opens++
        const parse = parser((m) => {
          if (m.event === 'gap') sub.gaps++
          else if (m.data !== undefined && m.event === undefined && m.id !== undefined) {
            sub.events.push({ id: m.id, key: ratingKey(JSON.parse(m.data) as FeedRating) })
          }
          if (m.id !== undefined) lastId = m.id
        })
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => {
          lastByte = Date.now()
          parse(chunk)
        })
        res.on('close', done)
        res.on('error', done)
      })
      const watchdog = setInterval(() => {
        if (Date.now() - lastByte > idleMs) req.destroy()
      }, 250)
      function done() {
        clearInterval(watchdog)
        current = null
        resolve()
      }
      req.on('error', () => {
        refuse(0)
        done()
      })
      current = req
      req.end()
    })

  void (async () => {
    while (!stopped) {
      const urls = targets()
      if (urls.length) await session(urls[turn++ % urls.length])
      if (!stopped) await new Promise((resolve) => setTimeout(resolve, retryMs))
    }
  })()
  t.teardown(() => {
    stopped = true
    current?.destroy()
  })
  await waitFor(`${user} stream open`, () => sub.opens > 0, 30_000)
  return sub
}
