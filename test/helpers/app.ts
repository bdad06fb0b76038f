import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import { Writable } from 'node:stream'
import { buildApp, type AppOptions } from '../../src/app.js'
import { loadConfig } from '../../src/config.js'

/** What a tap test object offers that the helpers need. */
export interface Teardown {
  teardown(fn: () => unknown): void
}

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
export const TEST_SECRET = 'moltbridge-test-secret-0123456789abcdef'

/** A key prefix of its own per test, so parallel test files never see each other's keys. */
export function uniquePrefix(): string {
  return `mbt-${randomBytes(5).toString('hex')}`
}

/** Deletes every key under a prefix (SCAN, never FLUSHDB: other tests share this Redis). */
export async function deletePrefix(prefix: string, url = REDIS_URL): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await redis.connect()
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500)
      cursor = next
      if (keys.length) await redis.del(...keys)
    } while (cursor !== '0')
  } catch {
    /* Redis gone (a fail-mode test stopped it): nothing to clean */
  } finally {
    redis.disconnect()
  }
}

/** Captured log lines (JSON strings), for tests that check what reaches the logs. */
export function logCapture() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean))
      done()
    }
  })
  return { lines, stream }
}

export interface TestAppOptions extends AppOptions {
  /** Run without Redis (memory stores). */
  memory?: boolean
}

/**
 * The gateway built from a test environment: real Redis (own key prefix), JWT_SECRET set,
 * logs silent unless captured. Closed (and its keys deleted) when the test ends.
 */
export async function buildTestApp(
  t: Teardown,
  env: Record<string, string | undefined> = {},
  options: TestAppOptions = {}
): Promise<FastifyInstance> {
  const prefix = env.KEY_PREFIX ?? uniquePrefix()
  const config = loadConfig({
    JWT_SECRET: TEST_SECRET,
    LOG_LEVEL: options.logStream ? 'info' : 'silent',
    REDIS_URL: options.memory ? undefined : REDIS_URL,
    KEY_PREFIX: prefix,
    IP_RATE_LIMIT_MAX: '0',
    // The test process also runs the load it sends: its event-loop delay is the test's, not the
    // gateway's, so load shedding is off unless a test turns it on (load-shedding.test.ts).
    UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS: '0',
    ...env
  })
  const app = await buildApp(config, options)
  t.teardown(async () => {
    await app.close()
    if (!options.memory && !env.KEY_PREFIX) await deletePrefix(prefix)
  })
  return app
}

/** Listens on a free loopback port; returns the base URL. */
export async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (!address || typeof address === 'string') throw new Error('no port')
  return `http://127.0.0.1:${address.port}`
}
