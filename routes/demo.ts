import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Type } from 'typebox'
import { SESSION_COOKIE } from '../src/auth/session.js'
import { DEMO_ITEMS, DEMO_USERS, LOGIN_TTL_S, mintDemoToken } from '../src/demo-world.js'
import { ErrorResponse } from '../src/errors.js'
import { Id } from '../src/rating.js'

/** The repository's public/ directory, found from this file both as routes/ (tap) and dist/routes/ (built). */
function publicDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir)
    if (parent === dir) throw new Error('demo: package.json not found above ' + fileURLToPath(import.meta.url))
    dir = parent
  }
  return join(dir, 'public')
}

/** The demo page and its login: only in demo mode (`npm run demo`, or DEMO=true on purpose). */
const demoRoutes: FastifyPluginAsyncTypebox = async (app) => {
  if (!app.demo) return
  if (!app.config.JWT_SECRET) {
    app.log.warn('demo mode needs JWT_SECRET to mint demo logins: demo page not served')
    return
  }
  await app.register(fastifyStatic, { root: publicDir(), serve: false })
  app.log.warn('demo mode: GET / serves the demo page and POST /demo/login mints tokens for anyone')

  const page = { config: { public: true }, schema: { hide: true } }
  app.get('/', page, (_request, reply) => reply.sendFile('index.html'))
  for (const file of ['app.js', 'style.css']) app.get(`/demo/${file}`, page, (_request, reply) => reply.sendFile(file))

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
      // The cookie lets the page's EventSource authenticate; the body's copy is for GET /v1/scores (Bearer).
      reply.setCookie(SESSION_COOKIE, token, { httpOnly: true, sameSite: 'strict', path: '/', maxAge: LOGIN_TTL_S })
      return { user_id, token, expires_in: LOGIN_TTL_S }
    }
  )
}

export default demoRoutes
