import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, type Config } from './config.js'

/** What the close hooks may take beyond DRAIN_MS: SSE last messages, in-flight forwards, Redis. */
const CLOSE_MARGIN_MS = 10_000

/** A start that cannot go on: one line on stderr, exit 1 (no stack: it is not a bug). */
function fatal(message: string): never {
  console.error(message)
  process.exit(1)
}

async function build(): Promise<FastifyInstance> {
  try {
    const config = loadConfig()
    return await buildApp(config, { demo: config.DEMO })
  } catch (err) {
    // A bad setting (also one found while loading, such as BUCKETS_FILE) is one line, exit 1.
    if (err instanceof ConfigError) fatal(err.message)
    throw err
  }
}

/**
 * SIGTERM drains: readiness turns 503 and new streams are refused, SSE clients are told to
 * reconnect elsewhere (spread over DRAIN_MS), in-flight forwards finish or stay queued, the
 * ingest lease is released, then exit 0. A second signal, or a drain past the delay, exits 1.
 */
function drainOnSignal(app: FastifyInstance, config: Config): void {
  closeWithGrace(
    {
      // SSE drain plus its last-message bound, then an OpenClaw call in flight, then a margin.
      delay: config.DRAIN_MS + config.OPENCLAW_TIMEOUT_MS + CLOSE_MARGIN_MS,
      // SIGHUP re-reads BUCKETS_FILE (plugins/buckets.ts): never a shutdown.
      skip: ['SIGHUP'],
      logger: { error: (message: unknown) => app.log.error(String(message)) }
    },
    async ({ signal, err }) => {
      const started = performance.now()
      if (err) app.log.error({ err }, 'fatal error, closing')
      else app.log.info({ signal, drainMs: config.DRAIN_MS }, 'draining')
      await app.close()
      app.log.info({ ms: Math.round(performance.now() - started) }, 'drained, exiting')
    }
  )
}

/** `npm start`: the gateway alone, configured from the environment (every setting in src/config.ts). */
async function main(): Promise<void> {
  const app = await build()
  const config = app.config
  app.server.keepAliveTimeout = 72_000 // longer than common load balancer idle timeouts
  try {
    await app.listen({ port: config.PORT, host: config.HOST })
  } catch (err) {
    // Port in use, address not available: nothing to drain, close what the plugins opened.
    await app.close().catch(() => {})
    fatal(`Cannot listen on ${config.HOST}:${config.PORT}: ${err instanceof Error ? err.message : String(err)}`)
  }
  drainOnSignal(app, config)
}

await main()
