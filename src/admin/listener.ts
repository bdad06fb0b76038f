import type { FastifyInstance } from 'fastify'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

type ConstraintStrategy = Parameters<FastifyInstance['addConstraintStrategy']>[0]

/** The route constraint that keeps the admin routes on the admin listener, and everything else off it. */
export const ADMIN_CONSTRAINT = { listener: 'admin' }

/**
 * A listener of its own for the admin API (ADMIN_PORT), so operators can keep /admin off the
 * public port: its requests go through the same app (hooks, auth, logging, error handler),
 * and a route constraint matches the admin routes there and only there.
 */
export class AdminListener {
  private readonly server: Server
  private readonly requests = new WeakSet<IncomingMessage>()

  constructor(route: (request: IncomingMessage, response: ServerResponse) => void) {
    this.server = createServer((request, response) => {
      this.requests.add(request)
      route(request, response)
    })
  }

  /**
   * Requests of this listener derive `admin` and then match only routes constrained to it
   * (mustMatchWhenDerived); the public listener's derive nothing, so a constrained route is
   * not found there.
   */
  strategy(): ConstraintStrategy {
    return {
      name: 'listener',
      mustMatchWhenDerived: true,
      storage() {
        const handlers = new Map<unknown, unknown>()
        return {
          get: (value: unknown) => (handlers.get(value) ?? null) as never,
          set: (value: unknown, handler: unknown) => void handlers.set(value, handler)
        }
      },
      deriveConstraint: (request: IncomingMessage) => (this.requests.has(request) ? ADMIN_CONSTRAINT.listener : undefined) as never
    }
  }

  listen(port: number, host: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, host, () => {
        this.server.off('error', reject)
        resolve()
      })
    })
  }

  get port(): number {
    return (this.server.address() as AddressInfo | null)?.port ?? 0
  }

  async close(): Promise<void> {
    if (!this.server.listening) return
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    this.server.closeAllConnections()
    await closed
  }
}
