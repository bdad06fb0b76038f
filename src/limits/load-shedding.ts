import { HttpError } from '../errors.js'
import type { Metrics } from '../metrics.js'

/** Seconds a shed client is told to wait: pressure is sampled every second, and clients must not return as one herd. */
export const SHED_RETRY_AFTER_S = 5

/** Never shed: liveness (a 503 there gets a busy process killed), the scrape that shows the pressure, and operators. */
const EXEMPT = /^\/(healthz|metrics|admin\/.*)$/

/**
 * The `pressureHandler` of @fastify/under-pressure: a new request (a new stream included) gets
 * 503 with Retry-After while the process is over a threshold, counted by what is exceeded.
 * Streams already open are never touched: the check runs only when a request arrives.
 */
export function shedLoad(metrics: Pick<Metrics, 'loadShed'>) {
  return async (request: { routeOptions: { url?: string } }, _reply: unknown, type: string): Promise<void> => {
    if (EXEMPT.test(request.routeOptions.url ?? '')) return
    metrics.loadShed.inc({ reason: type })
    throw new HttpError(503, 'overloaded: retry later', { 'Retry-After': String(SHED_RETRY_AFTER_S) })
  }
}
