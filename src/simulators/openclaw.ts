import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'
import { RatingSchema, type Rating, type ScoreEvent } from '../rating.js'
import { Compile } from 'typebox/compile'
import { seededRandom } from './random.js'

/** How the simulator behaves right now; every field can be switched at run time with `set`. */
export interface OpenClawMode {
  /** Delay before each answer. */
  latencyMs: number
  /** Share of requests (0..1) answered 500. */
  errorRate: number
  /** Answer 429 with `Retry-After: retryAfterS`, for the next `count` requests (or until turned off). */
  limited: { retryAfterS: number; count?: number } | null
  /** Connections refused: the listener is closed, and reopened on the same port when false again. */
  down: boolean
  /** Accept requests but never answer them. */
  stall: boolean
  /** What a 200 carries: the score event, a body that is not one, or a score for another rating. */
  answer: 'score' | 'not-a-score' | 'other-rating'
  /** Poison ratings: those of these items are refused with this status (a 4xx) every time. */
  refuse: { status: number; items: string[] } | null
  /**
   * Seeded chaos: phases of a few requests each, answered 200 (the normal path), 503, or 429 with
   * `Retry-After` 1 or 2 s, every answer delayed by up to `maxLatencyMs`. The same seed gives the
   * same sequence of answers for the same sequence of requests.
   */
  flapping: { seed: number; maxLatencyMs: number } | null
}

export interface Received {
  body: unknown
  authorization: string | undefined
  /** Date.now() when the request was read. */
  at: number
  /** The status it was answered with (unset while unanswered, or never answered). */
  status?: number
}

export interface OpenClawSimulator {
  url: string
  apiKey: string
  received: Received[]
  mode(): OpenClawMode
  set(mode: Partial<OpenClawMode>): Promise<void>
  /** How many requests arrived for one `(user_id, item_id, timestamp)` key. */
  count(key: Pick<Rating, 'user_id' | 'item_id' | 'timestamp'>): number
  /** Requests read and not answered yet (stalled ones included). */
  inFlight(): number
  close(): Promise<void>
}

export interface OpenClawOptions extends Partial<OpenClawMode> {
  port?: number
  host?: string
  apiKey?: string
}

const validRating = Compile(RatingSchema)

/** The personalized score: deterministic in (user, item, raw rating), in [0, 5], one decimal. */
export function personalize(rating: Rating): ScoreEvent {
  const digest = createHash('sha256').update(`${rating.user_id}\u0000${rating.item_id}`).digest()
  const bias = (digest[0] / 255 - 0.5) * 2 // -1 .. 1, the user's taste for this item
  const score = Math.round(Math.min(5, Math.max(0, rating.rating + bias)) * 10) / 10
  return { user_id: rating.user_id, item_id: rating.item_id, rating: score, timestamp: rating.timestamp }
}

function keyOf(value: Pick<Rating, 'user_id' | 'item_id' | 'timestamp'>): string {
  return `${value.user_id}\u0000${value.item_id}\u0000${value.timestamp}`
}

type Flap = { status: 200 | 503 | 429; retryAfterS: number; latencyMs: number }

/** The answers of `flapping` mode, one per request, from a seeded PRNG. */
function flapper({ seed, maxLatencyMs }: NonNullable<OpenClawMode['flapping']>): () => Flap {
  const random = seededRandom(seed)
  let left = 0
  let phase: Omit<Flap, 'latencyMs'> = { status: 200, retryAfterS: 0 }
  return () => {
    if (left-- <= 0) {
      left = 2 + Math.floor(random() * 12)
      const draw = random()
      phase = { status: draw < 0.5 ? 200 : draw < 0.75 ? 503 : 429, retryAfterS: 1 + Math.floor(random() * 2) }
    }
    return { ...phase, latencyMs: Math.floor(random() * maxLatencyMs) }
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/**
 * A real OpenClaw stand-in: `POST /v1/rating` with a Bearer key answers a personalized score
 * event. `GET /_sim/received` and `POST /_sim/mode` let another process inspect and steer it.
 */
export async function startOpenClaw(options: OpenClawOptions = {}): Promise<OpenClawSimulator> {
  const apiKey = options.apiKey ?? 'openclaw-sim-key'
  const host = options.host ?? '127.0.0.1'
  const state: OpenClawMode = {
    latencyMs: options.latencyMs ?? 0,
    errorRate: options.errorRate ?? 0,
    limited: options.limited ?? null,
    down: false,
    stall: options.stall ?? false,
    answer: options.answer ?? 'score',
    refuse: options.refuse ?? null,
    flapping: options.flapping ?? null
  }
  let flap = state.flapping ? flapper(state.flapping) : null
  let inFlight = 0
  const received: Received[] = []
  const counts = new Map<string, number>()
  const timers = new Set<NodeJS.Timeout>()

  const rate = async (req: IncomingMessage, res: ServerResponse) => {
    const text = await readBody(req)
    const body = parse(text)
    const entry: Received = { body, authorization: req.headers.authorization, at: Date.now() }
    received.push(entry)
    inFlight++
    res.once('close', () => inFlight--)
    const answer = (status: number, answerBody: unknown, headers?: Record<string, string>) => {
      entry.status = status
      sendJson(res, status, answerBody, headers)
    }
    if (validRating.Check(body)) counts.set(keyOf(body), (counts.get(keyOf(body)) ?? 0) + 1)
    if (state.stall) return // never answered; closed with the server
    const flapped = flap?.()
    const latencyMs = state.latencyMs + (flapped?.latencyMs ?? 0)
    if (latencyMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          timers.delete(timer)
          resolve()
        }, latencyMs)
        timers.add(timer)
      })
    }
    if (req.headers.authorization !== `Bearer ${apiKey}`) return answer(401, { error: 'invalid api key' })
    if (state.limited) {
      const { retryAfterS, count } = state.limited
      if (count !== undefined) state.limited = count > 1 ? { retryAfterS, count: count - 1 } : null
      return answer(429, { error: 'rate limited' }, { 'retry-after': String(retryAfterS) })
    }
    if (flapped?.status === 429) return answer(429, { error: 'rate limited' }, { 'retry-after': String(flapped.retryAfterS) })
    if (flapped?.status === 503) return answer(503, { error: 'simulated outage' })
    if (state.errorRate > 0 && Math.random() < state.errorRate) return answer(500, { error: 'simulated failure' })
    if (!validRating.Check(body)) return answer(400, { error: 'invalid rating' })
    if (state.refuse?.items.includes(body.item_id)) return answer(state.refuse.status, { error: 'rating refused' })
    if (state.answer === 'not-a-score') return answer(200, { score: 'not a score event' })
    const score = personalize(body)
    answer(200, state.answer === 'other-rating' ? { ...score, user_id: `${score.user_id}-other` } : score)
  }

  const control = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'GET' && req.url === '/_sim/received') return sendJson(res, 200, { received, mode: state })
    if (req.method === 'POST' && req.url === '/_sim/mode') {
      const mode = parse(await readBody(req))
      if (typeof mode !== 'object' || mode === null) return sendJson(res, 400, { error: 'mode must be an object' })
      await simulator.set(mode as Partial<OpenClawMode>)
      return sendJson(res, 200, state)
    }
    sendJson(res, 404, { error: 'not found' })
  }

  const server = createServer((req, res) => {
    const handler = req.method === 'POST' && req.url === '/v1/rating' ? rate : control
    handler(req, res).catch(() => res.destroy())
  })

  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve((server.address() as AddressInfo).port)
      })
    })
  const stop = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections() // stalled requests and keep-alive sockets too
    })

  const port = await listen(options.port ?? 0)

  const simulator: OpenClawSimulator = {
    url: `http://${host}:${port}`,
    apiKey,
    received,
    mode: () => ({ ...state }),
    async set(mode) {
      const { down, ...rest } = mode
      Object.assign(state, rest)
      if ('flapping' in rest) flap = state.flapping ? flapper(state.flapping) : null
      if (down === undefined || down === state.down) return
      state.down = down
      if (down) await stop()
      else await listen(port)
    },
    count: (key) => counts.get(keyOf(key)) ?? 0,
    inFlight: () => inFlight,
    async close() {
      for (const timer of timers) clearTimeout(timer)
      if (!state.down) await stop()
    }
  }
  if (options.down) await simulator.set({ down: true })
  return simulator
}

// Run alone: `node dist/src/simulators/openclaw.js` (PORT, OPENCLAW_API_KEY, OPENCLAW_LATENCY_MS).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const sim = await startOpenClaw({
    port: Number(process.env.PORT ?? 4000),
    host: process.env.HOST ?? '0.0.0.0',
    apiKey: process.env.OPENCLAW_API_KEY,
    latencyMs: Number(process.env.OPENCLAW_LATENCY_MS ?? 0)
  })
  console.log(`OpenClaw simulator listening on ${sim.url}`)
  const shutdown = () => void sim.close().then(() => process.exit(0))
  process.once('SIGTERM', shutdown)
  process.once('SIGINT', shutdown)
}
