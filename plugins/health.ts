import fp from 'fastify-plugin'
import { Type } from 'typebox'
import { withTimeout } from '../src/shared/timeout.js'

/** A readiness check answers null when healthy, or the reason it is not. */
export type ReadinessCheck = () => Promise<string | null>

declare module 'fastify' {
  interface FastifyInstance {
    readiness: { add(name: string, check: ReadinessCheck): void }
    /** Extra facts shown under `details` in /readyz (for example the ingest lease holder). */
    readinessDetail(name: string, read: () => unknown): void
  }
}

const Health = Type.Object({ status: Type.String() })
const Ready = Type.Object({
  status: Type.String(),
  checks: Type.Record(Type.String(), Type.String()),
  reason: Type.Optional(Type.String()),
  details: Type.Optional(Type.Record(Type.String(), Type.Unknown()))
})

/** /healthz (the process serves) and /readyz (every registered check passes: store, canary, ...). */
export default fp(
  async (app) => {
    const checks = new Map<string, ReadinessCheck>()
    const details = new Map<string, () => unknown>()
    let closing = false
    app.decorate('readiness', {
      add: (name: string, check: ReadinessCheck) => void checks.set(name, check)
    })
    app.decorate('readinessDetail', (name: string, read: () => unknown) => void details.set(name, read))
    app.addHook('preClose', async () => {
      closing = true
    })

    app.get(
      '/healthz',
      { config: { public: true }, schema: { summary: 'Liveness', response: { 200: Health } } },
      async () => ({ status: 'ok' })
    )

    app.get(
      '/readyz',
      {
        config: { public: true },
        schema: { summary: 'Readiness: store and fan-out canary', response: { 200: Ready, 503: Ready } }
      },
      async (_request, reply) => {
        const results: Record<string, string> = {}
        let reason: string | undefined
        if (closing) reason = 'draining: shutting down'
        await Promise.all(
          [...checks].map(async ([name, check]) => {
            // Each check within the budget: a hung Redis makes /readyz say so, not hang.
            const failure = await withTimeout(check(), app.config.READY_CANARY_MS).catch((err: Error) => err.message)
            results[name] = failure ?? 'ok'
            if (failure && !reason) reason = `${name}: ${failure}`
          })
        )
        const extra = Object.fromEntries([...details].map(([name, read]) => [name, read()]))
        reply.code(reason ? 503 : 200)
        return { status: reason ? 'not ready' : 'ready', checks: results, reason, details: extra }
      }
    )
  },
  { name: 'health', dependencies: ['docs'] }
)
