import { envSchema } from 'env-schema'
import { Type, type Static } from 'typebox'
import { MAX_TIMER_MS } from './shared/clock.js'
import { describeSchemaError, type SchemaError } from './shared/schema-error.js'

/** `host:port,host:port` (Cluster seeds, Sentinels). */
const HOST_PORTS = '^[^,:\\s]+:\\d+(,[^,:\\s]+:\\d+)*$'

/**
 * TRUST_PROXY: true, false, or comma-separated proxies, each an IPv4 or IPv6 address (optionally a
 * CIDR) or a proxy-addr range name. No hop count: Fastify 5 trusts no one for a number (a count
 * cannot tell the proxy from a client), and no host name (proxy-addr does not resolve names).
 */
const PROXY = String.raw`(loopback|linklocal|uniquelocal|\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(/\d{1,3})?)`
const TRUST_PROXY_FORMAT = new RegExp(String.raw`^(true|false|${PROXY}(,\s*${PROXY})*)$`)

/** Every setting of the gateway (and every bound it enforces), read from the environment. */
export const ConfigSchema = Type.Object({
  PORT: Type.Integer({ default: 3000, minimum: 0, maximum: 65535 }),
  HOST: Type.String({ default: '0.0.0.0' }),
  /** A listener of its own for /admin (then /admin is not served on PORT). */
  ADMIN_PORT: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
  /** Seconds a revocation is kept: at least the longest life of the tokens your issuer signs. */
  REVOCATION_TTL_S: Type.Integer({ default: 86400, minimum: 1 }),
  LOG_LEVEL: Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'info' }),

  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://' })),
  /** Comma-separated `host:port` seeds of a Redis Cluster; wins over REDIS_URL when set. */
  REDIS_CLUSTER_NODES: Type.Optional(Type.String({ pattern: HOST_PORTS })),
  /** Comma-separated `host:port` of Sentinels watching the primary named REDIS_SENTINEL_NAME. */
  REDIS_SENTINELS: Type.Optional(Type.String({ pattern: HOST_PORTS })),
  REDIS_SENTINEL_NAME: Type.Optional(Type.String({ minLength: 1 })),
  REDIS_SENTINEL_PASSWORD: Type.Optional(Type.String({ minLength: 1 })),
  /** A feed rating counts as queued only once this many replicas acknowledged it (WAIT). */
  REDIS_WAIT_REPLICAS: Type.Integer({ default: 0, minimum: 0 }),
  /** How long one WAIT may take before the feed is paused and the write retried. */
  REDIS_WAIT_TIMEOUT_MS: Type.Integer({ default: 1000, minimum: 1 }),
  /** Budget for one Redis command on the rate-limit path before the fail mode applies. */
  REDIS_TIMEOUT_MS: Type.Integer({ default: 50, minimum: 1 }),
  /** Prefix of every Redis key, so several deployments (or tests) can share one Redis. */
  KEY_PREFIX: Type.String({ default: 'mb', pattern: '^[A-Za-z0-9_.-]+$' }),

  /** HMAC key for HS* tokens: at least 32 bytes (checked in loadConfig, which names the variable). */
  JWT_SECRET: Type.Optional(Type.String({ minLength: 1 })),
  JWT_PUBLIC_KEY: Type.Optional(Type.String({ minLength: 1 })),
  JWT_JWKS_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  JWT_ISSUER: Type.Optional(Type.String({ minLength: 1 })),
  JWT_AUDIENCE: Type.Optional(Type.String({ minLength: 1 })),
  JWT_ALGORITHMS: Type.Optional(
    Type.String({ pattern: '^(HS|RS|PS|ES)(256|384|512)(,(HS|RS|PS|ES)(256|384|512)|,EdDSA|,Ed25519)*$|^(EdDSA|Ed25519)(,[A-Za-z0-9]+)*$' })
  ),
  JWT_CLOCK_TOLERANCE_S: Type.Integer({ default: 5, minimum: 0, maximum: 300 }),
  /** Tokens without `exp` are refused: a token that never expires cannot be taken back. */
  JWT_REQUIRE_EXP: Type.Boolean({ default: true }),
  /** After a JWKS fetch, an unknown `kid` triggers another fetch only once this much time has passed. */
  JWT_JWKS_COOLDOWN_MS: Type.Integer({ default: 30000, minimum: 0 }),

  MOLTBOOK_URL: Type.Optional(Type.String({ pattern: '^wss?://' })),
  /** A feed message above this size is skipped unparsed (counted as too_large). */
  MOLTBOOK_MAX_MESSAGE_BYTES: Type.Integer({ default: 524288, minimum: 1024 }),
  /** Ping interval of the feed socket; no pong before the next ping means a dead peer. */
  MOLTBOOK_PING_MS: Type.Integer({ default: 10000, minimum: 50 }),
  /** Reconnect backoff (exponential, full jitter) between these bounds. */
  MOLTBOOK_BACKOFF_BASE_MS: Type.Integer({ default: 250, minimum: 1 }),
  MOLTBOOK_BACKOFF_MAX_MS: Type.Integer({ default: 10000, minimum: 1 }),
  OPENCLAW_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  OPENCLAW_API_KEY: Type.Optional(Type.String({ minLength: 1 })),
  OPENCLAW_TIMEOUT_MS: Type.Integer({ default: 2000, minimum: 1 }),
  /** Connections (and so concurrent requests) to OpenClaw per replica. */
  OPENCLAW_CONCURRENCY: Type.Integer({ default: 32, minimum: 1 }),

  BUCKETS_FILE: Type.Optional(Type.String({ minLength: 1 })),
  RATE_LIMIT_FAIL_MODE: Type.Enum(['local', 'open', 'closed'], { default: 'local' }),
  IP_RATE_LIMIT_MAX: Type.Integer({ default: 6000, minimum: 0 }),
  /** Whose X-Forwarded-For is believed: proxy addresses/CIDRs (or loopback, linklocal, uniquelocal), or true. */
  TRUST_PROXY: Type.Optional(Type.String({ minLength: 1 })),
  /** Browser origins allowed to call the gateway with credentials, comma-separated; unset: same origin only. */
  CORS_ORIGINS: Type.Optional(Type.String({ minLength: 1 })),
  /** Serve HTTP/2 (and HTTP/1.1) over TLS on PORT: needs TLS_CERT_FILE and TLS_KEY_FILE. */
  HTTP2: Type.Boolean({ default: false }),
  /** PEM certificate chain and private key: with both set the gateway serves HTTPS. */
  TLS_CERT_FILE: Type.Optional(Type.String({ minLength: 1 })),
  TLS_KEY_FILE: Type.Optional(Type.String({ minLength: 1 })),
  BODY_LIMIT: Type.Integer({ default: 16384, minimum: 256 }),
  /** A request (headers and body) must arrive within this; a slower client is cut (408). Open SSE streams are exempt. */
  REQUEST_TIMEOUT_MS: Type.Integer({ default: 30000, minimum: 100 }),

  HISTORY_MAX: Type.Integer({ default: 1000, minimum: 1 }),
  HISTORY_TTL: Type.Integer({ default: 600, minimum: 1 }),
  /** Events `ratings:all` can replay, spread over its partitions. */
  EVENTS_STREAM_MAX: Type.Integer({ default: 10000, minimum: 10 }),
  /** Partitions of the `ratings:all` history (by user); a ratings:all position holds one id per partition. */
  EVENTS_PARTITIONS: Type.Integer({ default: 16, minimum: 1, maximum: 256 }),
  /** Without Redis: users whose history and scores the process keeps at most (the least recently active go first). */
  MEMORY_USERS_MAX: Type.Integer({ default: 100000, minimum: 1 }),
  DEDUP_TTL: Type.Integer({ default: 600, minimum: 1 }),
  /** Seconds a caller's latest score per item is kept for GET /v1/scores. */
  SCORES_TTL: Type.Integer({ default: 86400, minimum: 1 }),

  /** Forward queue bound (all partitions together): above it the feed socket is paused (back-pressure). */
  QUEUE_MAX: Type.Integer({ default: 10000, minimum: 2 }),
  /** Partitions of the forward queue (by agent), each a stream in its own slot; only ever raise it (README). */
  QUEUE_PARTITIONS: Type.Integer({ default: 16, minimum: 1, maximum: 1024 }),
  /** A pending forward not acknowledged for this long is reclaimed by another consumer. */
  QUEUE_CLAIM_MS: Type.Integer({ default: 15000, minimum: 100 }),
  LEASE_MS: Type.Integer({ default: 5000, minimum: 100 }),
  /** Retry of a failed forward (5xx, network, timeout): full-jitter backoff from this base... */
  FORWARD_BACKOFF_BASE_MS: Type.Integer({ default: 200, minimum: 1 }),
  /** ...up to this ceiling. */
  FORWARD_BACKOFF_MAX_MS: Type.Integer({ default: 10000, minimum: 1 }),
  /**
   * Feed ratings one replica works on at once: each attempt is several Redis round trips besides
   * its OpenClaw call, and OpenClaw still sees at most OPENCLAW_CONCURRENCY of them at a time.
   */
  FORWARD_CONCURRENCY: Type.Integer({ default: 128, minimum: 1 }),
  /** Queue entries one replica holds in memory at once (waiting for a token, a retry or OpenClaw). */
  FORWARD_HELD_MAX: Type.Integer({ default: 1000, minimum: 1 }),
  /** Longest upstream Retry-After honoured: a longer one (or an absurd one) waits this long. */
  FORWARD_RETRY_AFTER_MAX_MS: Type.Integer({ default: 60000, minimum: 0, maximum: MAX_TIMER_MS }),
  /** Dead-lettered ratings kept (the oldest go first beyond it). */
  DEAD_LETTERS_MAX: Type.Integer({ default: 10000, minimum: 1 }),

  SSE_HEARTBEAT_MS: Type.Integer({ default: 15000, minimum: 100 }),
  SSE_RETRY_MS: Type.Integer({ default: 2000, minimum: 0 }),
  SSE_MAX_STREAMS_PER_AGENT: Type.Integer({ default: 20, minimum: 1 }),
  SSE_MAX_UNSENT_BYTES: Type.Integer({ default: 1048576, minimum: 1024 }),
  /** `Secure` on the stream cookie (POST /v1/sse-session); false only for plain-HTTP development. */
  SSE_COOKIE_SECURE: Type.Boolean({ default: true }),
  TICKET_TTL_S: Type.Integer({ default: 30, minimum: 1 }),
  /** Outstanding SSE tickets kept by the memory store (no Redis); the oldest is dropped beyond it. */
  TICKETS_MEMORY_MAX: Type.Integer({ default: 10000, minimum: 1 }),

  /** Serve the demo page and its demo login (docker-compose sets it on purpose; never on by default). */
  DEMO: Type.Boolean({ default: false }),

  READY_CANARY_MS: Type.Integer({ default: 1000, minimum: 10 }),
  DRAIN_MS: Type.Integer({ default: 5000, minimum: 0 }),
  /** Load shedding: new requests get 503 while the event loop lags more than this (0: off)... */
  UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS: Type.Integer({ default: 1000, minimum: 0 }),
  /** ...or while the V8 heap holds more than this (0: off). */
  UNDER_PRESSURE_MAX_HEAP_USED_BYTES: Type.Integer({ default: 0, minimum: 0 }),

  /**
   * Tracing is on when one of these is set (OTLP/HTTP). The OpenTelemetry SDK reads them and the
   * other standard OTEL_* variables (sampler, headers, batch delays) itself.
   */
  OTEL_EXPORTER_OTLP_ENDPOINT: Type.Optional(Type.String({ pattern: '^https?://' })),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Type.Optional(Type.String({ pattern: '^https?://' })),
  OTEL_SERVICE_NAME: Type.Optional(Type.String({ minLength: 1 }))
})

export type Config = Static<typeof ConfigSchema>

/** RFC 7518 3.2: an HS256 key is at least as long as the hash (256 bits). */
const HMAC_SECRET_MIN_BYTES = 32

/** A configuration problem: the message names the variable, the process exits 1 without a stack. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

function describe(err: unknown): string {
  const first = (err as { errors?: SchemaError[] }).errors?.[0]
  if (!first) return err instanceof Error ? err.message : String(err)
  return describeSchemaError(first)
}

/** The Redis variables that only make sense together. */
function checkRedis(c: Config): void {
  const invalid = (message: string) => new ConfigError(`Invalid configuration: ${message}`)
  if (c.REDIS_SENTINELS && !c.REDIS_SENTINEL_NAME) throw invalid('REDIS_SENTINEL_NAME is required when REDIS_SENTINELS is set')
  if (!c.REDIS_SENTINELS && (c.REDIS_SENTINEL_NAME || c.REDIS_SENTINEL_PASSWORD)) {
    throw invalid(`REDIS_SENTINELS is required when ${c.REDIS_SENTINEL_NAME ? 'REDIS_SENTINEL_NAME' : 'REDIS_SENTINEL_PASSWORD'} is set`)
  }
  if (c.REDIS_SENTINELS && c.REDIS_CLUSTER_NODES) throw invalid('set REDIS_SENTINELS or REDIS_CLUSTER_NODES, not both')
  // ioredis would reach the primary without TLS through Sentinel unless told otherwise: refuse rather than downgrade.
  if (c.REDIS_SENTINELS && c.REDIS_URL?.startsWith('rediss:')) throw invalid('REDIS_URL must be redis:// with REDIS_SENTINELS (no TLS through Sentinel)')
  if (c.REDIS_WAIT_REPLICAS > 0 && !c.REDIS_URL && !c.REDIS_SENTINELS && !c.REDIS_CLUSTER_NODES) {
    throw invalid('REDIS_WAIT_REPLICAS needs Redis (REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES)')
  }
}

/** Reads and validates the configuration; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const data = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''))
  let config: Config
  try {
    config = envSchema<Config>({ schema: ConfigSchema, data, env: false, dotenv: false })
  } catch (err) {
    throw new ConfigError(`Invalid configuration: ${describe(err)}`)
  }
  if (!config.JWT_SECRET && !config.JWT_PUBLIC_KEY && !config.JWT_JWKS_URL) {
    throw new ConfigError('Invalid configuration: JWT_SECRET (or JWT_PUBLIC_KEY or JWT_JWKS_URL) is required')
  }
  if (config.JWT_SECRET !== undefined && Buffer.byteLength(config.JWT_SECRET) < HMAC_SECRET_MIN_BYTES) {
    throw new ConfigError(
      `Invalid configuration: JWT_SECRET must be at least ${HMAC_SECRET_MIN_BYTES} bytes (a short HMAC key can be guessed offline from one token): generate one with \`openssl rand -base64 48\``
    )
  }
  if (config.TRUST_PROXY !== undefined && !TRUST_PROXY_FORMAT.test(config.TRUST_PROXY)) {
    throw new ConfigError(
      'Invalid configuration: TRUST_PROXY must be the addresses or CIDRs of your proxies (comma-separated; loopback, linklocal, uniquelocal allowed), true or false: not a hop count or a host name'
    )
  }
  checkRedis(config)
  if (config.MOLTBOOK_URL && !config.OPENCLAW_URL) {
    throw new ConfigError('Invalid configuration: OPENCLAW_URL is required when MOLTBOOK_URL is set')
  }
  if (config.ADMIN_PORT !== undefined && config.ADMIN_PORT === config.PORT) {
    throw new ConfigError('Invalid configuration: ADMIN_PORT must differ from PORT')
  }
  if (config.OPENCLAW_URL && !config.OPENCLAW_API_KEY) {
    throw new ConfigError('Invalid configuration: OPENCLAW_API_KEY is required when OPENCLAW_URL is set')
  }
  if (Boolean(config.TLS_CERT_FILE) !== Boolean(config.TLS_KEY_FILE)) {
    throw new ConfigError('Invalid configuration: TLS_CERT_FILE and TLS_KEY_FILE must be set together')
  }
  if (config.HTTP2 && !config.TLS_CERT_FILE) {
    throw new ConfigError('Invalid configuration: HTTP2=true needs TLS_CERT_FILE and TLS_KEY_FILE (browsers speak HTTP/2 only over TLS)')
  }
  if (config.CORS_ORIGINS) corsOrigins(config.CORS_ORIGINS)
  return config
}

/**
 * CORS_ORIGINS as a list of origins (`scheme://host[:port]`, as browsers send them in `Origin`).
 * `*` is refused: the gateway allows credentials, and a wildcard would let any site use them.
 */
export function corsOrigins(value: string): string[] {
  return value.split(',').map((entry) => {
    const origin = entry.trim()
    let parsed: URL | undefined
    try {
      parsed = new URL(origin)
    } catch {
      // reported below
    }
    if (!parsed || parsed.origin !== origin || !/^https?:$/.test(parsed.protocol)) {
      const why = origin === '*' ? '`*` is not allowed with credentials: list the origins' : `"${origin}" is not an origin like https://app.example.com`
      throw new ConfigError(`Invalid configuration: CORS_ORIGINS: ${why}`)
    }
    return origin
  })
}
