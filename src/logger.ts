import type { FastifyBaseLogger, FastifyServerOptions } from 'fastify'
import type { DestinationStream } from 'pino'
import { containsJwt, TOKEN_PARAMS } from './shared/compact-jwt.js'

/** What the logic in src/ logs through (Fastify's pino logger, or a child of it). */
export type Log = Pick<FastifyBaseLogger, 'error' | 'warn' | 'info' | 'debug' | 'child'>

const REDACTED = '[REDACTED]'
/** A double encoding hides nothing from whoever reads the log: decode up to this many times. */
const DECODE_ROUNDS = 3

/** Percent-decoded byte by byte, repeatedly: enough to read parameter names and JWTs, which are ASCII. */
function percentDecoded(text: string): string {
  let plain = text
  for (let round = 0; round < DECODE_ROUNDS && plain.includes('%'); round++) {
    plain = plain.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
  }
  return plain
}

function isSecretParam(name: string): boolean {
  const lower = name.toLowerCase()
  return lower === 'ticket' || TOKEN_PARAMS.has(lower)
}

/**
 * A URL fit for a log line: the value of a credential parameter (`ticket`, `token`, ...) and any
 * path segment or parameter holding a compact JWT are replaced, judged after percent-decoding
 * (`?%74oken=`, an encoded JWT); everything else is kept as it came.
 */
export function redactUrl(url: string): string {
  const queryAt = url.indexOf('?')
  const path = queryAt === -1 ? url : url.slice(0, queryAt)
  const safePath = path
    .split('/')
    .map((segment) => (containsJwt(percentDecoded(segment)) ? REDACTED : segment))
    .join('/')
  if (queryAt === -1) return safePath
  const params = url
    .slice(queryAt + 1)
    .split('&')
    .map((param) => {
      const eq = param.indexOf('=')
      const name = eq === -1 ? param : param.slice(0, eq)
      const plainName = percentDecoded(name)
      if (containsJwt(plainName)) return REDACTED
      const value = eq === -1 ? '' : param.slice(eq + 1)
      return isSecretParam(plainName) || containsJwt(percentDecoded(value)) ? `${name}=${REDACTED}` : param
    })
  return `${safePath}?${params.join('&')}`
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
