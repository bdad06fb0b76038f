/**
 * A Moltbook feed simulator: a real WebSocket server that emits ratings at a set rate (or only
 * on demand), can send garbage, drop every socket or go silent (stop answering pings). Used by
 * the tests and the demo; runnable alone: `PORT=8081 RATE=20 node dist/src/simulators/moltbook.js`.
 */
import { pathToFileURL } from 'node:url'
import { WebSocket, WebSocketServer } from 'ws'
import { feedRatingValidator, type FeedRating } from '../rating.js'

export interface MoltbookOptions {
  /** 0 (default): a free port. */
  port?: number
  host?: string
  /** Ratings per second emitted on their own; 0 (default): only what `send` sends. */
  rate?: number
  users?: string[]
  items?: string[]
  /** When set, each emitted rating is charged to one of these agents (agent_id). */
  agents?: string[]
}

export interface MoltbookSimulator {
  /** ws://host:port/feed */
  url: string
  /** Every valid rating emitted to at least one client, in order. */
  sent: FeedRating[]
  /** Date.now() when each rating of `sent` went out (same index). */
  sentAt: number[]
  /** JSON-encodes `value` and sends it to every client; valid ratings in it are recorded in `sent`. */
  send(value: unknown): void
  /** Sends bytes as they are (a Buffer goes out as a binary frame). */
  sendRaw(data: string | Buffer): void
  setRate(ratingsPerSecond: number): void
  /** Terminates every socket (the clients see an abrupt loss). */
  dropAll(): void
  /** While on, pings go unanswered: the peer looks dead though its socket stays open. */
  silent(on: boolean): void
  /** Open client sockets now. */
  clients(): number
  /** Client sockets accepted since start. */
  readonly connections: number
  close(): Promise<void>
}

const TICK_MS = 50
/** Unsent bytes per client above which emission waits (the client is not reading). */
const HIGH_WATER_BYTES = 1 << 20

export async function startMoltbook(options: MoltbookOptions = {}): Promise<MoltbookSimulator> {
  const users = options.users ?? ['u1', 'u2', 'u3', 'u4', 'u5']
  const items = options.items ?? ['i1', 'i2', 'i3', 'i4', 'i5', 'i6', 'i7', 'i8']
  const agents = options.agents ?? []
  let rate = options.rate ?? 0
  let quiet = false
  let connections = 0
  const sent: FeedRating[] = []
  const sentAt: number[] = []
  // Last timestamp per (user, item): a new rating never repeats one, even within a second.
  const lastTimestamp = new Map<string, number>()

  const wss = new WebSocketServer({ port: options.port ?? 0, host: options.host ?? '127.0.0.1', autoPong: false })
  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve)
    wss.once('error', reject)
  })
  wss.on('connection', (ws) => {
    connections++
    ws.on('ping', (data) => {
      if (!quiet) ws.pong(data)
    })
    ws.on('error', () => {
      /* a client that vanished: nothing to do */
    })
  })

  const open = () => [...wss.clients].filter((ws) => ws.readyState === WebSocket.OPEN)

  const broadcast = (data: string | Buffer): number => {
    const targets = open()
    for (const ws of targets) ws.send(data)
    return targets.length
  }

  const pick = <T>(list: T[]): T => list[Math.floor(Math.random() * list.length)]

  const next = (): FeedRating => {
    const user_id = pick(users)
    const item_id = pick(items)
    const key = `${user_id}\u0000${item_id}`
    const timestamp = Math.max(Math.floor(Date.now() / 1000), (lastTimestamp.get(key) ?? 0) + 1)
    lastTimestamp.set(key, timestamp)
    const rating: FeedRating = { user_id, item_id, timestamp, rating: Math.round(Math.random() * 50) / 10 }
    if (agents.length) rating.agent_id = pick(agents)
    return rating
  }

  const send = (value: unknown) => {
    if (broadcast(JSON.stringify(value)) === 0) return
    const now = Date.now()
    for (const v of Array.isArray(value) ? value : [value]) {
      if (!feedRatingValidator.Check(v)) continue
      sent.push(v)
      sentAt.push(now)
    }
  }

  // Emission: a budget that grows by rate × elapsed; whole ratings go out in one message per tick.
  let budget = 0
  let lastTick = performance.now()
  const timer = setInterval(() => {
    const now = performance.now()
    budget += (rate * (now - lastTick)) / 1000
    lastTick = now
    const clients = open()
    // Nobody listening, or a client not reading (back-pressure): emit nothing and carry no debt.
    if (clients.length === 0 || clients.some((ws) => ws.bufferedAmount > HIGH_WATER_BYTES)) {
      budget = 0
      return
    }
    const count = Math.floor(budget)
    if (count === 0) return
    budget -= count
    const batch = Array.from({ length: count }, next)
    send(batch.length === 1 ? batch[0] : batch)
  }, TICK_MS)
  timer.unref()

  const address = wss.address()
  if (!address || typeof address === 'string') throw new Error('not listening on a TCP port')
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address

  return {
    url: `ws://${host === '0.0.0.0' ? '127.0.0.1' : host}:${address.port}/feed`,
    sent,
    sentAt,
    send,
    sendRaw: (data) => void broadcast(data),
    setRate: (n) => {
      rate = n
    },
    dropAll: () => {
      for (const ws of wss.clients) ws.terminate()
    },
    silent: (on) => {
      quiet = on
    },
    clients: () => open().length,
    get connections() {
      return connections
    },
    close: async () => {
      clearInterval(timer)
      for (const ws of wss.clients) ws.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    }
  }
}

function list(value: string | undefined): string[] | undefined {
  return value ? value.split(',').map((part) => part.trim()).filter(Boolean) : undefined
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = process.env
  const sim = await startMoltbook({
    port: Number(env.PORT ?? 8081),
    host: env.HOST ?? '0.0.0.0',
    rate: Number(env.RATE ?? 10),
    users: list(env.USERS),
    items: list(env.ITEMS),
    agents: list(env.AGENTS)
  })
  console.log(`moltbook simulator: ${sim.url}`)
  const stop = () => void sim.close().then(() => process.exit(0))
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}
