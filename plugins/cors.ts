import cors from '@fastify/cors'
import fp from 'fastify-plugin'
import { corsOptions } from '../src/browser/cors.js'
import { corsOrigins } from '../src/config.js'

/**
 * CORS for the origins of CORS_ORIGINS; unset, no CORS headers at all (same origin only). Loaded
 * before load shedding, the per-IP limit and auth (they depend on it): a preflight is answered
 * before any of them, and their refusals (503, 429, 401) carry the headers, so a page can read
 * the status and Retry-After.
 */
export default fp(
  async (app) => {
    const origins = app.config.CORS_ORIGINS
    if (!origins) return
    await app.register(cors, corsOptions(corsOrigins(origins)))
  },
  { name: 'cors' }
)
