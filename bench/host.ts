/**
 * Child process of the benchmark: hosts one server under test at a time, so its CPU and
 * memory are measured apart from the load generators. Commands arrive over IPC.
 */
import rateLimit from '@fastify/rate-limit'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { createServer, type ServerResponse } from 'node:http'
import { Socket, type AddressInfo } from 'node:net'
import { Pool } from 'undici'
import { buildApp } from '../src/app.js'
import { floorProxy, type FloorOptions } from './floor-proxy.js'
import { loadConfig } from '../src/config.js'
import type { ScoreEvent } from '../src/rating.js'
import { MemoryBucketStore, RedisBucketStore, type BucketStore } from '../src/limits/bucket-store.js'
import { DEFAULT_POLICY } from '../src/limits/policies.js'
import { createKeys } from '../src/redis/keys.js'
import { settledWithin } from '../src/shared/wait.js'

export type HostCommand =
  | { cmd: 'gateway'; env: Record<string, string> }
  | { cmd: 'bare-proxy'; openclawUrl: string; apiKey: string }
  | { cmd: 'floor-proxy'; options: FloorOptions }
  | { cmd: 'bucket'; kind: 'moltbridge-redis' | 'moltbridge-memory' | 'rate-limit-redis'; redisUrl: string; prefix: string }
  | { cmd: 'raw-sse' }
  | { cmd: 'publish'; events: ScoreEvent[] }
  | { cmd: 'memory' }
  | { cmd: 'writes' }
  | { cmd: 'stop' }

let close: () => Promise<void> = async () => {}
let publish: (event: ScoreEvent) => unknown = () => {}

const portOf = (address: AddressInfo | string | null) => (address as AddressInfo).port

/** Socket writes handed to libuv by this process since the last `writes` command, by peer. */
const writes = new Map<string, number>()
let countingWrites = false

/**
 * Counts every socket write (net.Socket's one internal write path, `_writeGeneric`, also taken by
 * writev): `client` for connections this process accepted, else the peer's port. From the first
 * `writes` command on; a counter increment per write.
 */
function countWrites(): void {
  if (countingWrites) return
  countingWrites = true
  type Writer = { _writeGeneric(this: Socket & { server?: unknown }, ...args: unknown[]): unknown }
  const proto = Socket.prototype as unknown as Writer
  const write = proto._writeGeneric
  proto._writeGeneric = function (...args) {
    const peer = this.server ? 'client' : String(this.remotePort)
    writes.set(peer, (writes.get(peer) ?? 0) + 1)
    return write.apply(this, args)
  }
}

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${portOf(app.server.address())}`
}

/** The baseline for the REST path: a bare Fastify route proxying to the same OpenClaw. */
async function bareProxy(openclawUrl: string, apiKey: string): Promise<string> {
  const pool = new Pool(openclawUrl, { connections: 32 })
  const app = Fastify()
  app.post('/v1/rating', async (request, reply) => {
    const res = await pool.request({
      path: '/v1/rating',
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(request.body)
    })
    reply.code(res.statusCode).type('application/json')
    return res.body.text()
  })
  close = async () => {
    await app.close()
    await pool.close()
  }
  return listen(app)
}

/** One decision per request, same key spread over 1000 agents, with each limiter under test. */
async function bucketServer(kind: string, redisUrl: string, prefix: string): Promise<string> {
  const policy = { ...DEFAULT_POLICY, capacity: 1_000_000_000, refill_rate: 1_000_000 }
  const redis = new Redis(redisUrl)
  let n = 0
  const agent = () => `${prefix}-agent-${n++ % 1000}`
  const app = Fastify()
  if (kind === 'rate-limit-redis') {
    await app.register(rateLimit, { max: 1_000_000_000, timeWindow: 60_000, redis, nameSpace: `${prefix}:rl:`, keyGenerator: agent })
  } else {
    const store: BucketStore = kind === 'moltbridge-redis' ? new RedisBucketStore(redis, createKeys(prefix)) : new MemoryBucketStore()
    app.addHook('onRequest', async (_request, reply) => {
      const decision = await store.take(agent(), 'rest', policy)
      if (!decision.allowed) return reply.code(429).send({ statusCode: 429 })
    })
  }
  app.get('/', async () => ({ ok: true }))
  close = async () => {
    await app.close()
    redis.disconnect()
  }
  return listen(app)
}

/** The baseline for SSE: a raw node:http server writing the same events to every stream. */
async function rawSse(): Promise<string> {
  const streams = new Set<ServerResponse>()
  let id = 0
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' })
    res.write('retry: 2000\n\n')
    streams.add(res)
    req.on('close', () => streams.delete(res))
  })
  publish = (event) => {
    const message = `id: ${++id}\ndata: ${JSON.stringify(event)}\n\n`
    for (const res of streams) res.write(message)
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  close = async () => {
    for (const res of streams) res.destroy()
    await new Promise((resolve) => server.close(resolve))
  }
  return `http://127.0.0.1:${portOf(server.address())}`
}

async function gateway(env: Record<string, string>): Promise<string> {
  const app = await buildApp(loadConfig(env))
  publish = (event) => app.events.publish(event, 'rest')
  close = () => app.close()
  return listen(app)
}

process.on('message', async (message: HostCommand) => {
  const reply = (value: unknown) => process.send?.(value)
  try {
    switch (message.cmd) {
      case 'gateway':
        return reply({ url: await gateway(message.env) })
      case 'floor-proxy': {
        const floor = await floorProxy(message.options)
        close = floor.close
        return reply({ url: floor.url })
      }
      case 'bare-proxy':
        return reply({ url: await bareProxy(message.openclawUrl, message.apiKey) })
      case 'bucket':
        return reply({ url: await bucketServer(message.kind, message.redisUrl, message.prefix) })
      case 'raw-sse':
        return reply({ url: await rawSse() })
      case 'publish':
        // Answered once every event is published (the gateway's publishes are in Redis then).
        await Promise.all(message.events.map((event) => publish(event)))
        return reply({ ok: true })
      case 'writes': {
        countWrites()
        const counted = Object.fromEntries(writes)
        writes.clear()
        return reply({ writes: counted })
      }
      case 'memory': {
        // What the process holds, not what the collector has yet to free: V8 returns the pages a
        // collection emptied from background threads, so twice, each time with a moment for that.
        for (let round = 0; round < 2; round++) {
          globalThis.gc?.()
          await new Promise((resolve) => setTimeout(resolve, 200))
        }
        const { rss, heapUsed } = process.memoryUsage()
        return reply({ rss, heapUsed })
      }
      case 'stop':
        await close()
        close = async () => {}
        return reply({ ok: true })
    }
  } catch (err) {
    reply({ error: (err as Error).message })
  }
})
// A child must not outlive the run (its stdout is the benchmark's): close, bounded, then exit.
process.on('disconnect', () => void settledWithin(close(), 20_000).finally(() => process.exit(0)))
