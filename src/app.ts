import autoload from '@fastify/autoload'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Fastify, { type FastifyHttpOptions, type FastifyInstance } from 'fastify'
import type { Server } from 'node:http'
import { join } from 'node:path'
import type { DestinationStream } from 'pino'
import type { Config } from './config.js'
import type { DemoControls } from './demo-controls.js'
import { errorHandler, notFoundHandler, schemaErrorFormatter } from './errors.js'
import { tlsListener } from './listener.js'
import { loggerOptions } from './logger.js'
import { newReplicaId } from './shared/replica-id.js'

export interface AppOptions {
  /** Demo mode (demo page login, dev tokens): only `npm run demo` turns it on, never the environment. */
  demo?: boolean
  /** The demo's switches (outage, dropped socket) and readings: only src/demo.ts passes them. */
  demoControls?: DemoControls
  /** Where logs go (tests capture them); stdout otherwise. */
  logStream?: DestinationStream
}

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
    demo: boolean
    /** Set by `npm run demo` only: the demo-only routes of routes/demo-controls.ts exist with it. */
    demoControls: DemoControls | null
    /** This gateway instance's name: queue consumer, lease owner and dedup claim owner. */
    replicaId: string
  }
  interface FastifyContextConfig {
    /** No JWT needed (health, metrics, docs, demo page). */
    public?: boolean
  }
}

export type App = FastifyInstance

/** TRUST_PROXY: `true` (every address: see README), `false`, or a comma-separated list of proxy addresses/CIDRs. */
function trustProxy(value: string | undefined): boolean | string | undefined {
  if (value === 'true' || value === 'false') return value === 'true'
  return value
}

/** How often Node looks for requests past their timeout: a tenth of it (Node's own ratio), 30 s at most. */
function requestCheckInterval(timeoutMs: number): number {
  return Math.min(30_000, Math.ceil(timeoutMs / 10))
}

/**
 * Fastify over the listener the configuration asks for (src/listener.ts). Plugins and routes are
 * typed against node:http; over HTTP/2 Node's compatibility layer gives them the same request and
 * response API, and the one place that writes to the raw response (the SSE hub) sends no header
 * HTTP/2 forbids. Hence the one cast below.
 */
function createServer(config: Config, options: FastifyHttpOptions<Server>): FastifyInstance {
  const tls = tlsListener(config)
  if (!tls) return Fastify(options)
  // node:https takes node:http's options (the request and header timeouts) beside the TLS ones.
  // Node 20 does not end HTTP/2 sessions on server.close(): Fastify does it with `true`.
  const listener = tls.http2
    ? { http2: true, https: tls.https, forceCloseConnections: true }
    : { https: { ...options.http, ...tls.https } }
  return Fastify({ ...options, ...listener } as unknown as FastifyHttpOptions<Server>)
}

/** The whole gateway as one Fastify instance, ready (plugins loaded, not listening). */
export async function buildApp(config: Config, options: AppOptions = {}): Promise<FastifyInstance> {
  const serverOptions: FastifyHttpOptions<Server> = {
    logger: loggerOptions(config.LOG_LEVEL, options.logStream),
    bodyLimit: config.BODY_LIMIT,
    // Node cuts a request still arriving after this (a trickled body, also after its 401: the
    // socket stays until the body is in). It counts until the request is fully received, so an
    // open SSE stream (a long response) is never cut; connectionTimeout (socket inactivity) is not
    // used: a trickle resets it, and it would cut a quiet stream. Node checks nothing while
    // headersTimeout is above requestTimeout: headers get the same budget.
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    http: {
      headersTimeout: config.REQUEST_TIMEOUT_MS,
      connectionsCheckingInterval: requestCheckInterval(config.REQUEST_TIMEOUT_MS)
    },
    trustProxy: trustProxy(config.TRUST_PROXY),
    // v1 is closed: an unknown field is a 400, never silently removed; a string is not a number.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    schemaErrorFormatter,
    // Keep-alive sockets must not hold a shutdown open.
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    // autoload imports every plugin and route file within this budget: under tap's on-the-fly
    // TypeScript loader on a busy machine that alone can pass Fastify's default 10 s.
    pluginTimeout: 60_000
  }
  const app = createServer(config, serverOptions).withTypeProvider<TypeBoxTypeProvider>()

  app.decorate('config', config)
  app.decorate('demo', options.demo === true)
  app.decorate('demoControls', options.demo === true ? (options.demoControls ?? null) : null)
  app.decorate('replicaId', newReplicaId())
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(notFoundHandler)

  // Every plugin in plugins/ (ordered by the dependencies each declares), then every route in
  // routes/ (their paths are written in full: no prefix from the folder).
  app.register(autoload, { dir: join(import.meta.dirname, '../plugins') })
  app.register(autoload, { dir: join(import.meta.dirname, '../routes'), dirNameRoutePrefix: false })
  try {
    await app.ready()
  } catch (err) {
    // A plugin failed to load (say, a bad BUCKETS_FILE): close what the others opened.
    await app.close().catch(() => {})
    throw err
  }
  return app
}
