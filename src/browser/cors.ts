import type { FastifyCorsOptions } from '@fastify/cors'

/** Browsers cache a preflight this long (Chromium caps it at 2 h, Firefox at 24 h). */
export const PREFLIGHT_MAX_AGE_S = 7200

/** What a page on another origin may read of an answer: how to pace itself, and the cache validator. */
export const EXPOSED_HEADERS = ['RateLimit', 'RateLimit-Policy', 'Retry-After', 'ETag', 'WWW-Authenticate']

/**
 * CORS for pages on the listed origins: the origin is echoed (never `*`), credentials are allowed
 * (the stream cookie), `Authorization` may be sent (tickets, scores, ratings), and a preflight is
 * cached. Any other origin gets no `Access-Control-Allow-Origin`, so its browser refuses the answer.
 */
export function corsOptions(origins: string[]): FastifyCorsOptions {
  return {
    origin: origins,
    credentials: true,
    methods: ['GET', 'HEAD', 'POST', 'DELETE'],
    allowedHeaders: ['Authorization', 'Content-Type', 'Last-Event-ID'],
    exposedHeaders: EXPOSED_HEADERS,
    maxAge: PREFLIGHT_MAX_AGE_S
  }
}
