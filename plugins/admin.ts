import fp from 'fastify-plugin'
import { logAdminAction, requireAdmin } from '../src/admin/access.js'
import { ADMIN_CONSTRAINT, AdminListener } from '../src/admin/listener.js'
import { ConfigError } from '../src/config.js'

/**
 * Every route under /admin/ (routes/admin/): a token with the scope `moltbridge:admin` (401
 * without a valid token, 403 without the scope), one log line per action naming the caller.
 * With ADMIN_PORT they are served on that listener only, and not found on the public one.
 */
export default fp(
  async (app) => {
    const { ADMIN_PORT, HOST } = app.config
    const listener = ADMIN_PORT ? new AdminListener((request, response) => app.routing(request, response)) : null
    if (listener) app.addConstraintStrategy(listener.strategy())

    app.addHook('onRoute', (route) => {
      if (!route.url.startsWith('/admin/')) return
      if (listener) route.constraints = { ...route.constraints, ...ADMIN_CONSTRAINT }
      route.onRequest = [route.onRequest ?? []].flat().concat(requireAdmin)
      route.onResponse = [route.onResponse ?? []].flat().concat(logAdminAction)
    })

    if (!listener || !ADMIN_PORT) return
    app.addHook('onReady', async () => {
      try {
        await listener.listen(ADMIN_PORT, HOST)
      } catch (err) {
        throw new ConfigError(`Invalid configuration: ADMIN_PORT ${ADMIN_PORT} cannot be listened on (${(err as Error).message})`)
      }
      app.log.info({ port: listener.port }, 'admin API listening on ADMIN_PORT (not on PORT)')
    })
    app.addHook('onClose', () => listener.close())
  },
  { name: 'admin', dependencies: ['auth'] }
)
