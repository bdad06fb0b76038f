// The moltbridge browser client (SPEC 10): one ES module, no dependencies, no build step.
// Served as GET /client.js; typed by client.d.ts; explained in README.md, "Browsers".

const STREAM = '/events/personalized-rating'

/**
 * Milliseconds to wait before reconnect attempt `attempt` (0 = the first since a stream opened):
 * full jitter, a uniform draw below a ceiling that doubles per attempt from the server's `retry:`
 * (at least 100 ms, so `retry: 0` cannot spin) up to `maxMs`, added to `Retry-After`: never earlier
 * than the server asked, and a refused crowd spreads out instead of coming back at once.
 */
export function reconnectDelay(attempt, { retryMs = 1000, retryAfterMs = 0, maxMs = 30000, random = Math.random } = {}) {
  const base = Math.max(retryMs, 100)
  return retryAfterMs + Math.floor(random() * Math.min(Math.max(maxMs, base), base * 2 ** Math.min(attempt, 30)))
}

/** A `Retry-After` header (seconds or an HTTP date) in milliseconds from `now`; 0 when absent or past. */
export function retryAfterMs(value, now = Date.now()) {
  const ms = /^\s*\d+\s*$/.test(value ?? '') ? value * 1000 : Date.parse(value) - now
  return ms > 0 ? ms : 0
}

/**
 * An event-stream parser (WHATWG HTML, "event stream interpretation") fed decoded text in chunks
 * of any size. At each blank line it calls onMessage({ id, event, data }) when the message had an
 * `id` or a `data` field: `data` undefined means an id-only message, which moves the position but
 * is no event; `id` is the message's own field (undefined without one). `retry:` goes to onRetry.
 */
export function sseParser(onMessage, onRetry) {
  let rest = ''
  let cr = false
  let id, data, event
  return (text) => {
    if (!text) return // a read that ended inside a multi-byte character
    if (cr && text[0] === '\n') text = text.slice(1) // a CRLF split across two chunks
    cr = text.endsWith('\r')
    const lines = (rest + text).split(/\r\n?|\n/)
    rest = lines.pop()
    for (const line of lines) {
      if (!line) {
        if (id !== undefined || data !== undefined) onMessage({ id, event: event || 'message', data })
        id = data = event = undefined
        continue
      }
      const colon = line.indexOf(':')
      if (colon === 0) continue // a comment (heartbeat)
      const field = colon < 0 ? line : line.slice(0, colon)
      const value = colon < 0 ? '' : line.slice(colon + (line[colon + 1] === ' ' ? 2 : 1))
      if (field === 'data') data = data === undefined ? value : `${data}\n${value}`
      else if (field === 'event') event = value
      else if (field === 'id' && !value.includes('\0')) id = value
      else if (field === 'retry' && /^\d+$/.test(value)) onRetry?.(Number(value))
    }
  }
}

/** Event ids are `<ms>-<seq>`: numbers padded to one width compare as strings in id order. */
const key = (id) => id.replace(/\d+/g, (digits) => digits.padStart(20, '0'))
const after = (id, last) => !last || key(id) > key(last)

/** The stream's owner, for the name tabs share it under: the JWT's claims, read (never verified). */
function owner(token) {
  const claims = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')))
  return `${claims.sub} ${claims.scope ?? ''}`
}

/** A page's callbacks must not break the stream: their errors are reported, not thrown at us. */
function call(fn, ...args) {
  try {
    fn?.(...args)
  } catch (err) {
    queueMicrotask(() => {
      throw err
    })
  }
}

/**
 * Subscribes a page to its personalized scores (options and behaviour: README.md, "Browsers").
 * Returns { close() }.
 */
export function subscribe({
  url = new URL(import.meta.url).origin,
  getToken,
  items,
  onScore,
  onGap,
  onStatus,
  shared = true,
  idleMs = 45000
}) {
  const base = url.replace(/\/+$/, '')
  const closing = new AbortController()
  if (!items?.length) items = undefined // no list: every item (an empty `items=` is a 400)
  const wanted = items && new Set(items)
  const bearer = async () => ({ authorization: `Bearer ${await getToken()}` })
  /** What the page was last told: the status and, when retrying after a refusal, its HTTP code. */
  let status
  let statusCode
  let wasLive = false
  let lastId = ''
  /** Messages that arrive while /v1/scores is painting, delivered after it. */
  let held = null
  let stopSource
  let channel
  /**
   * What the last paint showed per user and item. A painted score has no id, and the stream may
   * bring the same score again (published just before it opened): the first stream score of an
   * item is skipped when it is the painted one (same rating and timestamp).
   */
  const painted = new Map()
  const card = (e) => `${e.user_id}\n${e.item_id}`
  const shows = (e) => `${e.rating} ${e.timestamp}`
  const deliver = (event, id) => closing.signal.aborted || call(onScore, event, id)

  function setStatus(next, code) {
    if ((next === status && code === statusCode) || status === 'closed') return
    status = next
    statusCode = code
    call(onStatus, next, code)
    if (next === 'live' && !wasLive) {
      wasLive = true
      paint(false)
    }
  }

  // Paints `items` from /v1/scores once the stream is open (so nothing published meanwhile is
  // lost), holding back stream messages until then (so nothing older lands after the paint).
  async function paint(gap) {
    held = []
    if (wanted && getToken) {
      try {
        const query = new URLSearchParams({ items: items.join(',') })
        const res = await fetch(`${base}/v1/scores?${query}`, { headers: await bearer(), signal: closing.signal })
        if (res.ok) {
          for (const event of (await res.json()).scores) {
            painted.set(card(event), shows(event))
            deliver(event)
          }
        }
      } catch {
        // No paint (network, token): the stream goes on; a gap is still reported below.
      }
    }
    if (closing.signal.aborted) return
    if (gap) call(onGap)
    const queue = held
    held = null
    queue.forEach(receive)
  }

  /** One message from the stream (ours or the shared one): { id?, e? } or { gap: 1 }. */
  function receive(message) {
    if (closing.signal.aborted) return
    if (held) return held.push(message)
    if (message.gap) return paint(true)
    if (message.id) {
      if (!after(message.id, lastId)) return
      lastId = message.id
    }
    const e = message.e
    if (!e || (wanted && !wanted.has(e.item_id))) return
    const shown = painted.get(card(e))
    painted.delete(card(e))
    if (shown !== shows(e)) deliver(e, message.id)
  }

  /**
   * The connection loop: a fresh ticket and `lastEventId` on every connection, reconnecting with
   * backoff until stopped. `narrow` asks the server for `items` only (a shared stream carries the
   * owner's every item: each tab filters its own).
   */
  function connect(emit, report, narrow) {
    let position = lastId
    let retryMs = 1000
    let attempt = 0
    let connection, idle, timer, wake
    const stop = () => {
      connection?.abort()
      clearTimeout(idle)
      clearTimeout(timer)
      wake?.()
    }
    const done = (async () => {
      while (!closing.signal.aborted) {
        connection = new AbortController()
        const signal = connection.signal
        let waitMs = 0
        let code
        try {
          const query = new URLSearchParams()
          if (getToken) {
            const res = await fetch(`${base}/v1/sse-tickets`, { method: 'POST', headers: await bearer(), signal })
            if (!res.ok) throw res
            query.set('ticket', (await res.json()).ticket)
          }
          if (narrow && items) query.set('items', items.join(','))
          if (position) query.set('lastEventId', position)
          const res = await fetch(`${base}${STREAM}?${query}`, {
            headers: { accept: 'text/event-stream' },
            // A ticket stream sends no cookie: a session cookie would win over the ticket.
            credentials: getToken ? 'omit' : 'include',
            signal
          })
          if (res.status === 400 && position) {
            // The server cannot resume from our id (its history was reset): start over, as a gap.
            position = ''
            emit({ gap: 1 })
          }
          if (!res.ok) throw res
          attempt = 0
          report('live')
          const parse = sseParser((m) => {
            if (m.id && after(m.id, position)) position = m.id
            if (m.event === 'gap') return emit({ gap: 1 })
            let e
            try {
              if (m.event === 'message') e = JSON.parse(m.data)
            } catch {
              // Not a score event: skipped, its id still counts.
            }
            if (m.id || e) emit({ id: m.id, e })
          }, (ms) => (retryMs = ms))
          const reader = res.body.getReader()
          const decoder = new TextDecoder()
          for (;;) {
            // A connection that stays silent past the heartbeats is dead (a half-open socket).
            clearTimeout(idle)
            idle = setTimeout(() => connection.abort(), idleMs)
            const { done, value } = await reader.read()
            if (done) break
            parse(decoder.decode(value, { stream: true }))
          }
        } catch (err) {
          code = err?.status
          waitMs = retryAfterMs(err?.headers?.get('retry-after'))
        } finally {
          clearTimeout(idle)
          connection.abort() // frees a refused or finished response's socket
        }
        if (closing.signal.aborted) break
        report('retrying', code)
        if (closing.signal.aborted) break // a page may close() from onStatus
        await new Promise((resolve) => {
          wake = resolve
          timer = setTimeout(resolve, reconnectDelay(attempt++, { retryMs, retryAfterMs: waitMs }))
        })
      }
    })()
    stopSource = stop
    return { done, position: () => position }
  }

  // One stream per browser and owner: the tab holding the Web Lock streams and broadcasts, the
  // others listen; when it goes, the next tab in the lock's queue resumes from the last id it saw.
  async function share() {
    let who = ''
    if (shared && globalThis.navigator?.locks && typeof BroadcastChannel === 'function') {
      try {
        who = getToken ? owner(await getToken()) : 'cookie'
      } catch {
        // Not a JWT we can read: this tab streams on its own.
      }
    }
    if (closing.signal.aborted) return
    if (!who) return connect(receive, setStatus, true)
    const name = `moltbridge ${base} ${who}`
    channel = new BroadcastChannel(name)
    let source
    channel.onmessage = ({ data }) => {
      if (data.hello && source) {
        channel.postMessage({ s: status, c: statusCode })
        channel.postMessage({ id: source.position() })
      } else if (data.s) setStatus(data.s, data.c)
      else if (!data.hello) receive(data)
    }
    channel.postMessage({ hello: 1 })
    const lead = () => {
      source = connect(
        (message) => {
          channel.postMessage(message)
          receive(message)
        },
        (s, c) => {
          channel.postMessage({ s, c })
          setStatus(s, c)
        },
        false
      )
      return source.done
    }
    navigator.locks.request(name, { signal: closing.signal }, lead).catch(() => {
      // Aborted by close() before this tab's turn came.
    })
  }

  setStatus('connecting')
  share()
  return {
    close() {
      if (status === 'closed') return
      closing.abort()
      stopSource?.()
      channel?.close()
      setStatus('closed')
    }
  }
}
