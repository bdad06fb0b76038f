import cookie from '@fastify/cookie'
import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { publicDir } from '../src/browser/public-dir.js'
import { DEMO_ITEMS, DEMO_USERS, LOGIN_TTL_S, mintDemoToken } from '../src/demo-world.js'
import { ErrorResponse } from '../src/errors.js'
import { Id } from '../src/rating.js'

/** The page's own scripts and style, served under /demo/ (client.js is the gateway's own, at /client.js). */
const DEMO_FILES = ['app.js', 'chart.js', 'latency.js', 'buckets.js', 'metrics.js', 'style.css']

/** The demo page and its login: only in demo mode (`npm run demo`, or DEMO=true on purpose). */
const demoRoutes: FastifyPluginAsyncTypebox = async (app) => {
  if (!app.demo) return
  if (!app.config.JWT_SECRET) {
    app.log.warn('demo mode needs JWT_SECRET to mint demo logins: demo page not served')
    return
  }
  await app.register(fastifyStatic, { root: publicDir(), serve: false })
  await app.register(cookie, { hook: false }) // the login sets the stream cookie
  app.log.warn('demo mode: GET / serves the demo page and POST /demo/login mints tokens for anyone')

  const page = { config: { public: true }, schema: { hide: true } }
  app.get('/', page, (_request, reply) => reply.sendFile('index.html'))
  for (const file of DEMO_FILES) app.get(`/demo/${file}`, page, (_request, reply) => reply.sendFile(file))

  app.get(
    '/demo/users',
    {
      config: { public: true },
      schema: { response: { 200: Type.Object({ users: Type.Array(Id), items: Type.Array(Id) }) } }
    },
    async () => ({ users: DEMO_USERS, items: DEMO_ITEMS })
  )

  app.post(
    '/demo/login',
    {
      config: { public: true },
      schema: {
        body: Type.Object({ user_id: Id }, { additionalProperties: false }),
        response: {
          200: Type.Object({ user_id: Id, token: Type.String(), expires_in: Type.Integer() }),
          400: ErrorResponse
        }
      }
    },
    async (request, reply) => {
      const { user_id } = request.body
      const token = await mintDemoToken(app.config, user_id)
      // The same stream cookie as POST /v1/sse-session; the body's copy is for the client's getToken (Bearer).
      app.sessionCookie.set(reply, token, Math.floor(Date.now() / 1000) + LOGIN_TTL_S)
      return { user_id, token, expires_in: LOGIN_TTL_S }
    }
  )
}

export default demoRoutes
