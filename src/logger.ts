import type { FastifyBaseLogger, FastifyServerOptions } from 'fastify'
import type { DestinationStream } from 'pino'

/** What the logic in src/ logs through (Fastify's pino logger, or a child of it). */
export type Log = Pick<FastifyBaseLogger, 'error' | 'warn' | 'info' | 'debug' | 'child'>

/** Query parameters whose values are credentials: never logged. */
const SECRET_QUERY = /([?&](?:ticket|token|access_token|jwt|id_token)=)[^&#]*/gi

export function redactUrl(url: string): string {
  return url.replace(SECRET_QUERY, '$1[REDACTED]')
}

/**
 * pino JSON (pretty only on a TTY), with credentials removed: authorization and cookie headers,
 * tickets and tokens in URLs, and the OpenClaw key wherever it could be nested.
 */
export function loggerOptions(level: string, stream?: DestinationStream): FastifyServerOptions['logger'] {
  const base = {
    level,
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        'headers.authorization',
        'headers.cookie',
        'res.headers["set-cookie"]',
        '*.OPENCLAW_API_KEY',
        'OPENCLAW_API_KEY',
        'config.OPENCLAW_API_KEY',
        'ticket',
        '*.ticket',
        'token',
        '*.token'
      ],
      censor: '[REDACTED]'
    },
    serializers: {
      req: (req: { method: string; url: string; ip?: string; id?: string }) => ({
        id: req.id,
        method: req.method,
        url: redactUrl(req.url),
        remoteAddress: req.ip
      })
    }
  }
  if (stream) return { ...base, stream } as FastifyServerOptions['logger']
  if (process.stdout.isTTY) return { ...base, transport: { target: 'pino-pretty' } }
  return base
}
