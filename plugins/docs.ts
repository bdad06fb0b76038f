import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'

/** OpenAPI description of every route (built from the route schemas) at /docs. */
export default fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        info: { title: 'moltbridge', description: 'Ratings gateway: REST proxy and SSE', version: '1.0.0' },
        components: {
          securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } }
        }
      }
    })
    await app.register(async (docs) => {
      // The UI's own routes are public like /healthz: mark them as they are added.
      docs.addHook('onRoute', (route) => {
        route.config = { ...route.config, public: true }
      })
      await docs.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list' } })
    })
  },
  { name: 'docs' }
)
