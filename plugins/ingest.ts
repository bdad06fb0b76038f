import fp from 'fastify-plugin'
import { FeedIngest } from '../src/feed/ingest.js'

declare module 'fastify' {
  interface FastifyInstance {
    ingest: Pick<FeedIngest, 'start' | 'stop' | 'connected'>
  }
}

/** Reads the Moltbook feed into the forward queue (src/feed/ingest.ts); the lease plugin starts and stops it. */
export default fp(
  async (app) => {
    const { config } = app
    if (!config.MOLTBOOK_URL) {
      app.decorate('ingest', { start() {}, async stop() {}, connected: false })
      return
    }
    const ingest = new FeedIngest(
      { url: config.MOLTBOOK_URL, sink: app.forwarder, metrics: app.metrics, log: app.log },
      {
        maxMessageBytes: config.MOLTBOOK_MAX_MESSAGE_BYTES,
        pingMs: config.MOLTBOOK_PING_MS,
        backoff: { baseMs: config.MOLTBOOK_BACKOFF_BASE_MS, maxMs: config.MOLTBOOK_BACKOFF_MAX_MS }
      }
    )
    app.decorate('ingest', ingest)
    // preClose: stop reading before the forwarder drains in its own close hooks.
    app.addHook('preClose', async () => {
      await ingest.close()
      const lost = ingest.unqueued()
      if (lost > 0) app.log.warn({ ratings: lost }, 'closing with moltbook ratings read but not queued')
    })
  },
  { name: 'ingest', dependencies: ['metrics', 'forwarder'] }
)
