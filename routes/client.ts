import fastifyStatic from '@fastify/static'
import type { FastifyPluginAsync } from 'fastify'
import { publicDir } from '../src/browser/public-dir.js'

/** The browser client and its types, with the media types browsers and editors expect. */
const FILES = [
  { file: 'client.js', type: 'text/javascript', summary: 'The browser client (an ES module)' },
  { file: 'client.d.ts', type: 'application/typescript', summary: "The browser client's types" }
]

/**
 * GET /client.js (an ES module) and GET /client.d.ts, in every mode: public, revalidated by ETag
 * after 5 minutes, and readable from any origin (it is public code; the API stays behind
 * CORS_ORIGINS), so a page elsewhere can `import { subscribe } from 'https://gateway/client.js'`.
 */
const clientRoutes: FastifyPluginAsync = async (app) => {
  await app.register(fastifyStatic, { root: publicDir(), serve: false, maxAge: '5m' })
  for (const { file, type, summary } of FILES) {
    app.get(
      `/${file}`,
      {
        config: { public: true, cors: false },
        schema: { summary, produces: [type] },
        // @fastify/static names .js application/javascript; RFC 9239 makes text/javascript the one.
        onSend: async (_request, reply) => {
          if (reply.statusCode === 200) reply.header('Content-Type', `${type}; charset=utf-8`)
        }
      },
      (_request, reply) =>
        reply.header('Access-Control-Allow-Origin', '*').header('X-Content-Type-Options', 'nosniff').sendFile(file)
    )
  }
}

export default clientRoutes
