import fp from 'fastify-plugin'
import { startTracing } from '../src/tracing/sdk.js'

/**
 * OpenTelemetry tracing, on when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set (src/tracing/).
 * Loaded before routes/ (app.ts), so every route gets its request span.
 */
export default fp(
  async (app) => {
    const tracing = await startTracing(app.config, app.replicaId)
    if (!tracing) return
    await app.register(tracing.plugin)
    app.addHook('onClose', () => tracing.shutdown())
    app.log.info('tracing: spans go to the OTLP endpoint of OTEL_EXPORTER_OTLP_*')
  },
  { name: 'tracing' }
)
