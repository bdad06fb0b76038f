import { WebSocket, type RawData } from 'ws'
import type { Log } from '../logger.js'
import type { Metrics } from '../metrics.js'
import type { FeedRating } from '../rating.js'
import { backoffDelay, type BackoffOptions } from '../shared/backoff.js'
import { clampDelay } from '../shared/clock.js'
import { OutageLog } from '../shared/outage-log.js'
import { settledWithin, Wakeable } from '../shared/wait.js'
import { parseFeedMessage } from './feed-message.js'
import { loggable, toBuffer, watchPeer } from './feed-socket.js'
import { InvalidMessageLog } from './invalid-log.js'

/** Far above the message limit, so an oversized message is skipped, not a closed socket. */
const MAX_PAYLOAD = 16 * 1024 * 1024
/** stop() waits this long for Moltbook's close frame (reading what it sent before it) before cutting the socket. */
const CLOSE_TIMEOUT_MS = 1000

/** Where the feed's ratings go: the forward queue, with its high- and low-water marks. */
export interface RatingSink {
  enqueue(ratings: FeedRating[], readAt: number): Promise<void>
  /** True while the queue is above its high-water mark: reading pauses. */
  full(): boolean
  /** Resolves once the queue is below its low-water mark. */
  waitForRoom(): Promise<void>
}

export interface FeedIngestDeps {
  /** The Moltbook feed (it may carry credentials: logged without userinfo and query). */
  url: string
  sink: RatingSink
  metrics: Pick<
    Metrics,
    'moltbookConnected' | 'moltbookConnects' | 'moltbookReconnects' | 'moltbookMessages' | 'moltbookPaused'
  >
  log: Log
}

export interface FeedIngestOptions {
  /** A message over this size is skipped unparsed. */
  maxMessageBytes: number
  /** A peer that has not answered the previous ping by the next one is replaced. */
  pingMs: number
  /** Between reconnects, and between retries of a failed enqueue. */
  backoff: BackoffOptions
}

/** One run of the feed, from start() to stop(): stopping it ends every wait inside it. */
class Session {
  stopped = false
  ws: WebSocket | null = null
  /** The loop handing pending ratings to the queue, while one runs. */
  draining: Promise<void> | null = null
  /** Paused by back-pressure (also applied to a socket opened while paused). */
  paused = false
  reconnectTimer: NodeJS.Timeout | undefined
  /** The drain loop's waits (retry delay, room in the queue): stop() cuts them short. */
  readonly waits = new Wakeable()
}

interface Pending {
  ratings: FeedRating[]
  readAt: number
}

/**
 * Reads the Moltbook feed: validates each message, queues valid ratings in order, pauses the
 * socket while the queue is full, reconnects with backoff, detects a dead peer.
 */
export class FeedIngest {
  private session: Session | null = null
  private open = false
  private readonly where: string
  private readonly socketOutage: OutageLog
  private readonly queueOutage: OutageLog
  /** Read but not yet queued: kept across stop()/start() (a lost lease, a Redis outage), so none is dropped. */
  private readonly pending: Pending[] = []
  private readonly invalidLog: InvalidMessageLog
  /**
   * What a stopped session left pending is drained by a session without a socket: nobody else
   * read those ratings, so this replica queues them even when another one leads from now on (a
   * lease lost during a Redis outage or failover). Ended by start() or close().
   */
  private leftovers: Session | null = null

  constructor(
    private readonly deps: FeedIngestDeps,
    private readonly options: FeedIngestOptions
  ) {
    this.where = loggable(deps.url)
    this.invalidLog = new InvalidMessageLog(deps.log)
    this.socketOutage = new OutageLog(
      deps.log,
      { down: 'moltbook socket error: reconnecting with backoff', up: 'moltbook reachable again' },
      { url: this.where }
    )
    this.queueOutage = new OutageLog(deps.log, {
      down: 'moltbook ratings not queued: feed paused, retrying with backoff',
      up: 'moltbook ratings queued again'
    })
  }

  /** True while a feed socket is open. */
  get connected(): boolean {
    return this.open
  }

  /** Ratings read but not yet queued (lost if the process ends now). */
  unqueued(): number {
    return this.pending.reduce((count, message) => count + message.ratings.length, 0)
  }

  /** Connects to Moltbook and keeps reading (reconnecting) until stop(); a no-op while running. */
  start(): void {
    if (this.session) return
    this.session = new Session()
    this.connect(this.session, 0)
    this.startDrain(this.session, this.endLeftovers())
  }

  /** Closes the socket, clears every timer, never reconnects; a no-op when stopped. */
  async stop(): Promise<void> {
    const session = this.session
    if (!session) return
    this.session = null
    session.stopped = true
    session.waits.wake()
    clearTimeout(session.reconnectTimer)
    const ws = session.ws
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      // Not events.once: it would reject on the 'error' a socket still connecting emits first.
      const closed = new Promise((resolve) => ws.once('close', resolve))
      ws.resume() // the close frame must be read; the messages before it are kept
      ws.close(1001, 'going away')
      if (!(await settledWithin(closed, CLOSE_TIMEOUT_MS))) ws.terminate()
      await closed
    }
    this.deps.metrics.moltbookPaused.set(0)
    await session.draining
    if (this.pending.length > 0) {
      this.leftovers = new Session()
      this.startDrain(this.leftovers)
    }
  }

  /** Stops for good: ends the leftover drain after one last try to queue what is pending. */
  async close(): Promise<void> {
    await this.stop()
    await this.endLeftovers()
    await this.flush()
  }

  private async endLeftovers(): Promise<void> {
    const leftovers = this.leftovers
    this.leftovers = null
    if (!leftovers) return
    leftovers.stopped = true
    leftovers.waits.wake()
    await leftovers.draining
  }

  private setPaused(session: Session, paused: boolean): void {
    session.paused = paused
    if (paused) session.ws?.pause()
    else session.ws?.resume()
    this.deps.metrics.moltbookPaused.set(paused ? 1 : 0)
  }

  /** Queues one message's ratings, retrying (socket paused) while the queue fails; false if stopped first. */
  private async enqueue(session: Session, { ratings, readAt }: Pending): Promise<boolean> {
    for (let attempt = 0; !session.stopped; attempt++) {
      try {
        await this.deps.sink.enqueue(ratings, readAt)
        this.queueOutage.up()
        return true
      } catch (err) {
        this.setPaused(session, true)
        this.queueOutage.down(err)
        await session.waits.sleep(backoffDelay(attempt, this.options.backoff))
      }
    }
    return false
  }

  /** Hands pending ratings to the queue strictly in order; pauses the socket while the queue is full. */
  private async drain(session: Session): Promise<void> {
    const { sink } = this.deps
    while (this.pending.length > 0 && !session.stopped) {
      if (!(await this.enqueue(session, this.pending[0]))) return
      this.pending.shift()
      if (sink.full()) {
        this.setPaused(session, true)
        await Promise.race([sink.waitForRoom(), session.waits.sleep()])
      }
    }
    if (session.paused && !session.stopped) this.setPaused(session, false)
  }

  /** Last try on close: queue what is still pending, once, without waiting. */
  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      try {
        await this.deps.sink.enqueue(this.pending[0].ratings, this.pending[0].readAt)
      } catch {
        return
      }
      this.pending.shift()
    }
  }

  /** Drains `session` once `after` settled: two drains never hand the same pending rating over at once. */
  private startDrain(session: Session, after: Promise<void> = Promise.resolve()): void {
    session.draining ??= after
      .then(() => this.drain(session))
      .catch((err: Error) => this.deps.log.error({ err }, 'moltbook ratings not handed to the queue'))
      .finally(() => {
        session.draining = null
      })
  }

  // Also called while stop() closes the socket: what Moltbook sent before its close frame is kept.
  private onMessage(session: Session, raw: RawData, isBinary: boolean): void {
    const readAt = Date.now()
    const data = toBuffer(raw)
    const { metrics } = this.deps
    const { ratings, invalid, moreInvalid } = parseFeedMessage(data, isBinary, this.options.maxMessageBytes)
    for (const { reason, detail } of invalid) {
      metrics.moltbookMessages.inc({ result: 'invalid', reason })
      this.invalidLog.skipped(reason, detail, data, isBinary)
    }
    if (moreInvalid > 0) metrics.moltbookMessages.inc({ result: 'invalid', reason: 'schema' }, moreInvalid)
    if (ratings.length === 0) return
    metrics.moltbookMessages.inc({ result: 'valid', reason: '' }, ratings.length)
    this.pending.push({ ratings, readAt })
    if (!session.stopped) this.startDrain(session)
  }

  private connect(session: Session, attempt: number): void {
    const { metrics, log } = this.deps
    const { pingMs, backoff } = this.options
    const url = this.where
    const ws = new WebSocket(this.deps.url, { maxPayload: MAX_PAYLOAD, handshakeTimeout: Math.max(pingMs, 1000) })
    session.ws = ws
    let openedAt = 0
    let ping: NodeJS.Timeout | undefined

    ws.on('open', () => {
      openedAt = performance.now()
      this.open = true
      this.socketOutage.up()
      metrics.moltbookConnects.inc()
      metrics.moltbookConnected.set(1)
      log.info({ url }, 'moltbook connected')
      if (session.paused) ws.pause()
      ping = watchPeer(ws, pingMs, () => session.paused, () => log.warn({ url }, 'moltbook peer silent: reconnecting'))
    })
    ws.on('message', (data, isBinary) => this.onMessage(session, data, isBinary))
    ws.on('error', (err) => this.socketOutage.down(err))
    ws.on('close', (code) => {
      clearInterval(ping)
      if (session.ws === ws) session.ws = null
      const wasOpen = openedAt > 0
      if (wasOpen) {
        this.open = false
        metrics.moltbookConnected.set(0)
        log.info({ url, code }, 'moltbook disconnected')
      }
      if (session.stopped) return
      // A connection that stayed up resets the backoff; one that failed or died young does not.
      const stayedUp = wasOpen && performance.now() - openedAt >= backoff.maxMs
      const next = stayedUp ? 0 : attempt + 1
      const delay = backoffDelay(next, backoff)
      metrics.moltbookReconnects.inc()
      log.debug({ url, delayMs: delay }, 'moltbook reconnect scheduled')
      session.reconnectTimer = setTimeout(() => {
        if (!session.stopped) this.connect(session, next)
      }, clampDelay(delay))
    })
  }
}
