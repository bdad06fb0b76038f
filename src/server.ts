import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { ConfigError, loadConfig } from './config.js'

/** `npm start`: the gateway alone, configured from the environment (SPEC 7). */
async function main() {
  let app
  try {
    const config = loadConfig()
    app = await buildApp(config, { demo: config.DEMO })
  } catch (err) {
    // A bad setting (also one found while loading, such as BUCKETS_FILE) is one line, exit 1.
    if (!(err instanceof ConfigError)) throw err
    console.error(err.message)
    process.exit(1)
  }
  const config = app.config
  // SIGTERM drains: readiness turns 503, SSE clients are told to reconnect elsewhere (spread
  // over DRAIN_MS), in-flight forwards finish, then the process exits 0.
  closeWithGrace({ delay: config.DRAIN_MS + 10000 }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'fatal error, closing')
    else app.log.info({ signal }, 'draining')
    await app.close()
  })
  app.server.keepAliveTimeout = 72_000 // longer than common load balancer idle timeouts
  app.server.headersTimeout = 75_000
  await app.listen({ port: config.PORT, host: config.HOST })
}

await main()
