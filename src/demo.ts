/**
 * `npm run demo`: the whole pipeline in one process with no other service: a simulated Moltbook
 * feed, a simulated OpenClaw and the gateway (memory stores, demo page at `/`).
 */
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import type { DestinationStream } from 'pino'
import { DEMO_ITEMS, DEMO_USERS, mintDemoToken } from './demo-world.js'
import { buildApp } from './app.js'
import { createDemoControls } from './demo-controls.js'
import { loadConfig } from './config.js'
import type { Action } from './limits/policies.js'
import { startMoltbook, type MoltbookSimulator } from './simulators/moltbook.js'
import { startOpenClaw, type OpenClawSimulator } from './simulators/openclaw.js'

export interface DemoOptions {
  /** Preferred port (default 3000); when taken, a free one. 0: a free one. */
  port?: number
  /** Default 127.0.0.1: the demo login mints tokens for anyone who can reach it. */
  host?: string
  /** Feed ratings per second (default 20). */
  rate?: number
  logLevel?: string
  logStream?: DestinationStream
}

export interface Demo {
  /** The demo page. */
  url: string
  /** A dev JWT for `user`, minted here only. */
  token: string
  user: string
  app: FastifyInstance
  moltbook: MoltbookSimulator
  openclaw: OpenClawSimulator
  close(): Promise<void>
}

/**
 * The feed spreads its ratings over two agents. `rest` is the seed's 40 tokens refilled at 20/s,
 * so the page's "Burst 50" shows 40 admitted and 10 refused; the others are generous enough that
 * the page updates briskly and a drained outage backlog reaches the cards without being held back.
 */
const DEMO_AGENTS = ['agent-north', 'agent-south']
const DEMO_POLICIES: Record<Action, { refill_rate: number; capacity: number }> = {
  rest: { refill_rate: 20, capacity: 40 },
  read: { refill_rate: 100, capacity: 200 },
  forward: { refill_rate: 200, capacity: 400 },
  delivery: { refill_rate: 100, capacity: 200 }
}
const TOKEN_TTL_S = 3600

async function writeBucketsFile(dir: string): Promise<string> {
  const policies = Object.entries(DEMO_POLICIES).map(([action, limits]) => ({
    action,
    bucket_name: `demo-${action}`,
    ...limits,
    key_selector: 'jwt.claims.agent_id'
  }))
  const file = join(dir, 'buckets.json')
  await writeFile(file, JSON.stringify(policies, null, 2))
  return file
}

/** `port` when it can be bound on `host`, else 0 (the OS picks a free one). */
function availablePort(port: number, host: string): Promise<number> {
  if (port === 0) return Promise.resolve(0)
  return new Promise((resolve) => {
    const probe = createServer()
    probe.once('error', () => resolve(0))
    probe.listen(port, host, () => probe.close(() => resolve(port)))
  })
}

export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const host = options.host ?? '127.0.0.1'
  const closers: Array<() => Promise<unknown>> = []
  const close = async () => {
    for (const closeOne of closers.splice(0).reverse()) await closeOne()
  }
  try {
    const openclaw = await startOpenClaw()
    closers.push(() => openclaw.close())
    const moltbook = await startMoltbook({ rate: options.rate ?? 20, users: DEMO_USERS, items: DEMO_ITEMS, agents: DEMO_AGENTS })
    closers.push(() => moltbook.close())
    const demoControls = createDemoControls({ moltbook, openclaw })
    closers.push(() => demoControls.close())
    const dir = await mkdtemp(join(tmpdir(), 'moltbridge-demo-'))
    closers.push(() => rm(dir, { recursive: true, force: true }))

    const config = loadConfig({
      HOST: host,
      LOG_LEVEL: options.logLevel ?? 'warn',
      JWT_SECRET: randomBytes(32).toString('base64url'),
      MOLTBOOK_URL: moltbook.url,
      OPENCLAW_URL: openclaw.url,
      OPENCLAW_API_KEY: openclaw.apiKey,
      BUCKETS_FILE: await writeBucketsFile(dir),
      // The demo serves plain HTTP: a Secure cookie would not come back (outside localhost).
      SSE_COOKIE_SECURE: 'false'
    })
    const app = await buildApp(config, { demo: true, demoControls, logStream: options.logStream })
    closers.push(() => app.close())
    await app.listen({ port: await availablePort(options.port ?? 3000, host), host })

    const address = app.server.address()
    if (!address || typeof address === 'string') throw new Error('demo: no TCP address')
    const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
    const user = DEMO_USERS[0]
    return {
      url: `http://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${address.port}/`,
      token: await mintDemoToken(config, user, TOKEN_TTL_S),
      user,
      app,
      moltbook,
      openclaw,
      close
    }
  } catch (err) {
    await close()
    throw err
  }
}

function banner(demo: Demo): string {
  const rating = { user_id: demo.user, item_id: DEMO_ITEMS[0], timestamp: Math.floor(Date.now() / 1000), rating: 4.7 }
  return [
    '',
    'moltbridge demo: gateway + simulated Moltbook feed + simulated OpenClaw, all in this process',
    '',
    `  open     ${demo.url}`,
    `  user     ${demo.user} (dev JWT below, valid ${TOKEN_TTL_S / 3600} h, minted by the demo only)`,
    `  token    ${demo.token}`,
    '  try      curl -s -X POST ' +
      `${demo.url}v1/rating -H 'authorization: Bearer ${demo.token}' ` +
      `-H 'content-type: application/json' -d '${JSON.stringify(rating)}'`,
    '',
    'Ctrl-C stops everything.',
    ''
  ].join('\n')
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.env.PORT ?? 3000)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error('Invalid configuration: PORT must be an integer from 0 to 65535')
    process.exit(1)
  }
  const demo = await startDemo({ port, host: process.env.HOST, logLevel: process.env.LOG_LEVEL })
  console.log(banner(demo))
  closeWithGrace({ delay: 10000 }, async ({ err }) => {
    if (err) console.error(err)
    await demo.close()
  })
}
