import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { WebSocket, type RawData } from 'ws'
import { backoffDelay, type BackoffOptions } from '../src/shared/backoff.js'
import { parseFeedMessage, type InvalidReason } from '../src/feed/feed-message.js'
import type { FeedRating } from '../src/rating.js'

declare module 'fastify' {
  interface FastifyInstance {
    ingest: {
      /** Connect to Moltbook and keep reading (reconnecting) until stop(); no-op when running. */
      start(): void
      /** Close the socket, clear every timer, never reconnect; no-op when stopped. */
      stop(): Promise<void>
      /** True while a feed socket is open. */
      readonly connected: boolean
    }
  }
}

/** Far above MOLTBOOK_MAX_MESSAGE_BYTES, so an oversized message is skipped, not a closed socket. */
const MAX_PAYLOAD = 16 * 1024 * 1024
/** At most one log line per invalid reason per window (with how many were skipped). */
const INVALID_LOG_WINDOW_MS = 10_000
const EXCERPT_CHARS = 80
/** stop() waits this long for Moltbook's close frame (reading what it sent before it) before cutting the socket. */
const CLOSE_TIMEOUT_MS = 1000

/** One run of the feed, from start() to stop(): stopping it ends every wait inside it. */
interface Session {
  stopped: boolean
  ws: WebSocket | null
  /** The loop handing pending ratings to the forwarder, while one runs. */
  draining: Promise<void> | null
  /** Paused by back-pressure (also applied to a socket opened while paused). */
  paused: boolean
  reconnectTimer: NodeJS.Timeout | null
  /** Ends the current wait (retry delay or room in the queue) early: called by stop(). */
  wake: (() => void) | null
}

interface Pending {
  ratings: FeedRating[]
  readAt: number
}

function newSession(): Session {
  return { stopped: false, ws: null, draining: null, paused: false, reconnectTimer: null, wake: null }
}

/** Waits `until` ms, or until that promise settles, whichever first; stop() ends it. One wait at a time: the drain loop is sequential. */
function wait(s: Session, until: number | Promise<void>): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = typeof until === 'number' ? setTimeout(() => done(), until) : undefined
    const done = () => {
      clearTimeout(timer)
      if (s.wake === done) s.wake = null
      resolve()
    }
    s.wake = done
    if (typeof until !== 'number') void until.then(done, done)
  })
}

function toBuffer(data: RawData): Buffer {
  if (Array.isArray(data)) return Buffer.concat(data)
  return Buffer.isBuffer(data) ? data : Buffer.from(data)
}

/** The URL as it may be logged: no userinfo, no query (either may carry credentials). */
function loggable(url: string): string {
  const u = new URL(url)
  return `${u.origin}${u.pathname}`
}

function createIngest(app: FastifyInstance, url: string) {
  const { metrics, log } = app
  const c = app.config
  const backoff: BackoffOptions = { baseMs: c.MOLTBOOK_BACKOFF_BASE_MS, maxMs: c.MOLTBOOK_BACKOFF_MAX_MS }
  const where = loggable(url)
  let session: Session | null = null
  let connected = false
  /** One warning per outage, not one per failed attempt. */
  let unreachable = false
  // Read but not yet queued: kept across stop()/start() (a lost lease, a Redis outage), so none is dropped.
  const pending: Pending[] = []
  const invalidLog = new Map<InvalidReason, { at: number; skipped: number }>()

  const logInvalid = (reason: InvalidReason, detail: string, data: Buffer, isBinary: boolean) => {
    const now = performance.now()
    const last = invalidLog.get(reason)
    if (last && now - last.at < INVALID_LOG_WINDOW_MS) {
      last.skipped++
      return
    }
    invalidLog.set(reason, { at: now, skipped: 0 })
    const excerpt = isBinary ? undefined : data.subarray(0, EXCERPT_CHARS * 4).toString('utf8').slice(0, EXCERPT_CHARS)
    log.warn({ reason, detail, excerpt, skippedSinceLastLog: last?.skipped ?? 0 }, 'moltbook message skipped')
  }

  const setPaused = (s: Session, paused: boolean) => {
    s.paused = paused
    if (paused) s.ws?.pause()
    else s.ws?.resume()
    metrics.moltbookPaused.set(paused ? 1 : 0)
  }

  /** Queues one message's ratings, retrying (socket paused) while the queue fails; false if stopped first. */
  const enqueue = async (s: Session, { ratings, readAt }: Pending): Promise<boolean> => {
    for (let attempt = 0; !s.stopped; attempt++) {
      try {
        await app.forwarder.enqueue(ratings, readAt)
        if (attempt > 0) log.info({ attempts: attempt + 1 }, 'moltbook ratings queued again')
        return true
      } catch (err) {
        setPaused(s, true)
        const reason = err instanceof Error ? err.message : String(err)
        if (attempt === 0) log.warn({ err: reason }, 'moltbook ratings not queued: feed paused, retrying with backoff')
        await wait(s, backoffDelay(attempt, backoff))
      }
    }
    return false
  }

  /** Hands pending ratings to the queue strictly in order; pauses the socket while the queue is full. */
  const drain = async (s: Session) => {
    while (pending.length > 0 && !s.stopped) {
      if (!(await enqueue(s, pending[0]))) return
      pending.shift()
      if (app.forwarder.full()) {
        setPaused(s, true)
        await wait(s, app.forwarder.waitForRoom())
      }
    }
    if (s.paused && !s.stopped) setPaused(s, false)
  }

  /** Last try on stop(): queue what is still pending, once, without waiting; the rest waits for start(). */
  const flush = async () => {
    while (pending.length > 0) {
      try {
        await app.forwarder.enqueue(pending[0].ratings, pending[0].readAt)
      } catch {
        return
      }
      pending.shift()
    }
  }

  const startDrain = (s: Session) => {
    s.draining ??= drain(s)
      .catch((err: Error) => log.error({ err }, 'moltbook ratings not handed to the queue'))
      .finally(() => {
        s.draining = null
      })
  }

  // Also called while stop() closes the socket: what Moltbook sent before its close frame is kept.
  const onMessage = (s: Session, raw: RawData, isBinary: boolean) => {
    const readAt = Date.now()
    const data = toBuffer(raw)
    const { ratings, invalid } = parseFeedMessage(data, isBinary, c.MOLTBOOK_MAX_MESSAGE_BYTES)
    for (const { reason, detail } of invalid) {
      metrics.moltbookMessages.inc({ result: 'invalid', reason })
      logInvalid(reason, detail, data, isBinary)
    }
    if (ratings.length === 0) return
    metrics.moltbookMessages.inc({ result: 'valid', reason: '' }, ratings.length)
    pending.push({ ratings, readAt })
    if (!s.stopped) startDrain(s)
  }

  const connect = (s: Session, attempt: number) => {
    const ws = new WebSocket(url, { maxPayload: MAX_PAYLOAD, handshakeTimeout: Math.max(c.MOLTBOOK_PING_MS, 1000) })
    s.ws = ws
    let openedAt = 0
    let ping: NodeJS.Timeout | undefined
    let awaitingPong = false

    ws.on('open', () => {
      openedAt = performance.now()
      connected = true
      unreachable = false
      metrics.moltbookConnects.inc()
      metrics.moltbookConnected.set(1)
      log.info({ url: where }, 'moltbook connected')
      if (s.paused) ws.pause()
      // Dead peer: no pong by the next ping. Not while paused: pongs are not read then.
      ping = setInterval(() => {
        if (s.paused) {
          awaitingPong = false
          return
        }
        if (awaitingPong) {
          log.warn({ url: where }, 'moltbook peer silent: reconnecting')
          ws.terminate()
          return
        }
        awaitingPong = true
        ws.ping()
      }, c.MOLTBOOK_PING_MS)
      ping.unref()
    })
    ws.on('pong', () => {
      awaitingPong = false
    })
    ws.on('message', (data, isBinary) => onMessage(s, data, isBinary))
    ws.on('error', (err) => {
      if (unreachable) return log.debug({ url: where, err: err.message }, 'moltbook socket error')
      unreachable = true
      log.warn({ url: where, err: err.message }, 'moltbook socket error: reconnecting with backoff')
    })
    ws.on('close', (code) => {
      clearInterval(ping)
      if (s.ws === ws) s.ws = null
      const wasOpen = openedAt > 0
      if (wasOpen) {
        connected = false
        metrics.moltbookConnected.set(0)
        log.info({ url: where, code }, 'moltbook disconnected')
      }
      if (s.stopped) return
      // A connection that stayed up resets the backoff; one that failed or died young does not.
      const stayedUp = wasOpen && performance.now() - openedAt >= c.MOLTBOOK_BACKOFF_MAX_MS
      const next = stayedUp ? 0 : attempt + 1
      const delay = backoffDelay(next, backoff)
      metrics.moltbookReconnects.inc()
      log.debug({ url: where, delayMs: delay }, 'moltbook reconnect scheduled')
      s.reconnectTimer = setTimeout(() => {
        s.reconnectTimer = null
        if (!s.stopped) connect(s, next)
      }, delay)
    })
  }

  return {
    start() {
      if (session) return
      session = newSession()
      connect(session, 0)
      startDrain(session)
    },
    async stop() {
      const s = session
      if (!s) return
      session = null
      s.stopped = true
      s.wake?.()
      if (s.reconnectTimer) clearTimeout(s.reconnectTimer)
      const ws = s.ws
      if (ws && ws.readyState !== WebSocket.CLOSED) {
        // Not events.once: it would reject on the 'error' a socket still connecting emits first.
        const closed = new Promise((resolve) => ws.once('close', resolve))
        ws.resume() // the close frame must be read; the messages before it are kept
        ws.close(1001, 'going away')
        const cut = setTimeout(() => ws.terminate(), CLOSE_TIMEOUT_MS)
        await closed
        clearTimeout(cut)
      }
      metrics.moltbookPaused.set(0)
      await s.draining
      await flush()
    },
    get connected() {
      return connected
    },
    /** Ratings read but not yet queued (lost if the process ends now). */
    unqueued: () => pending.reduce((n, p) => n + p.ratings.length, 0)
  }
}

/**
 * Reads the Moltbook feed (SPEC 2, 6): validates each message, queues valid ratings in order,
 * pauses the socket while the queue is full, reconnects with backoff, detects a dead peer.
 */
export default fp(
  async (app) => {
    const url = app.config.MOLTBOOK_URL
    if (!url) {
      app.decorate('ingest', { start() {}, async stop() {}, connected: false })
      return
    }
    const ingest = createIngest(app, url)
    app.decorate('ingest', ingest)
    // No autostart: the lease plugin (registered after this one) starts and stops ingest on the leader.
    // preClose: stop reading before the forwarder drains in its own close hooks.
    app.addHook('preClose', async () => {
      await ingest.stop()
      const lost = ingest.unqueued()
      if (lost > 0) app.log.warn({ ratings: lost }, 'closing with moltbook ratings read but not queued')
    })
  },
  { name: 'ingest', dependencies: ['metrics', 'forwarder'] }
)
