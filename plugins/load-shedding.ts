import underPressure from '@fastify/under-pressure'
import fp from 'fastify-plugin'
import { shedLoad } from '../src/limits/load-shedding.js'

/**
 * Load shedding (@fastify/under-pressure): while the event loop lags or the heap is over its
 * threshold, new requests get 503 + Retry-After before any other work is done for them (this
 * hook runs first after CORS's, which lets a page read the 503: the per-IP limit and auth depend
 * on this plugin). The thresholds are
 * exported as `moltbridge_bound` (plugins/metrics.ts).
 */
export default fp(
  async (app) => {
    await app.register(underPressure, {
      maxEventLoopDelay: app.config.UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS,
      maxHeapUsedBytes: app.config.UNDER_PRESSURE_MAX_HEAP_USED_BYTES,
      pressureHandler: shedLoad(app.metrics)
    })
  },
  { name: 'load-shedding', dependencies: ['metrics', 'cors'] }
)
