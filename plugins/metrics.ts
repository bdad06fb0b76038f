import fp from 'fastify-plugin'
import { createMetrics, type Metrics } from '../src/metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Metrics
  }
}

export default fp(
  async (app) => {
    const metrics = createMetrics()
    app.decorate('metrics', metrics)
    const config = app.config
    const bounds = {
      queue_max: config.QUEUE_MAX,
      history_max: config.HISTORY_MAX,
      streams_per_agent: config.SSE_MAX_STREAMS_PER_AGENT,
      unsent_bytes: config.SSE_MAX_UNSENT_BYTES,
      body_limit: config.BODY_LIMIT,
      dead_letters_max: config.DEAD_LETTERS_MAX,
      max_event_loop_delay_ms: config.UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS,
      max_heap_used_bytes: config.UNDER_PRESSURE_MAX_HEAP_USED_BYTES
    }
    for (const [bound, value] of Object.entries(bounds)) metrics.bounds.set({ bound }, value)

    // A callback hook: no promise per request for a counter.
    app.addHook('onResponse', (request, reply, done) => {
      metrics.httpRequests.inc({ route: request.routeOptions.url ?? 'unknown', status: reply.statusCode })
      done()
    })
    app.get('/metrics', { config: { public: true }, schema: { hide: true } }, async (_request, reply) => {
      reply.type(metrics.registry.contentType)
      return metrics.registry.metrics()
    })
    app.addHook('onClose', async () => metrics.registry.clear())
  },
  { name: 'metrics', decorators: { fastify: ['config'] }, dependencies: ['docs'] }
)
