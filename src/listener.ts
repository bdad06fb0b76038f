import { readFileSync } from 'node:fs'
import { ConfigError, type Config } from './config.js'

/** Fastify's listener options beyond plain HTTP/1.1: TLS, and HTTP/2 beside HTTP/1.1. */
export interface TlsListener {
  https: { key: Buffer; cert: Buffer; allowHTTP1?: true }
  http2?: true
}

function readPem(variable: 'TLS_CERT_FILE' | 'TLS_KEY_FILE', path: string): Buffer {
  try {
    return readFileSync(path)
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? String(err)
    throw new ConfigError(`Invalid configuration: ${variable} cannot be read (${path}: ${reason})`)
  }
}

/**
 * TLS_CERT_FILE + TLS_KEY_FILE serve HTTPS; HTTP2=true adds HTTP/2 by ALPN, with HTTP/1.1 on the
 * same port for clients without it (probes, curl). HTTP/2 lifts the browsers' six connections per
 * origin: every stream of a page shares one connection. Undefined: plain HTTP/1.1.
 */
export function tlsListener(config: Config): TlsListener | undefined {
  if (!config.TLS_CERT_FILE || !config.TLS_KEY_FILE) return undefined
  const tls = { cert: readPem('TLS_CERT_FILE', config.TLS_CERT_FILE), key: readPem('TLS_KEY_FILE', config.TLS_KEY_FILE) }
  return config.HTTP2 ? { http2: true, https: { ...tls, allowHTTP1: true } } : { https: tls }
}
