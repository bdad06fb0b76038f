import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { DemoReadings, PostRating } from '../src/demo-controls.js'
import { DEMO_ITEMS } from '../src/demo-world.js'
import { Id } from '../src/rating.js'

/**
 * The demo's switches and readings (GET /demo/state, POST /demo/burst, POST /demo/outage,
 * POST /demo/drop-socket):
 * only under `npm run demo`, which passes its controls to buildApp. A gateway started any other
 * way (DEMO mode included) has no `demoControls`, hence none of these routes.
 */
const demoControlRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const controls = app.demoControls
  if (!app.demo || !controls) return
  const readings: DemoReadings = {
    metrics: app.metrics,
    queueDepth: async () => (await app.forwarder.depths()).reduce((sum, { depth }) => sum + depth, 0),
    policy: (action, agentId) => app.buckets.effective(action, agentId)
  }
  const config = { public: true }
  // Query strings are not coerced (v1 is strict): `since` is digits, read as a number.
  const Query = Type.Object({ user: Id, since: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })) }, { additionalProperties: false })

  app.get('/demo/state', { config, schema: { hide: true, querystring: Query } }, (request) => {
    const { user, since } = request.query
    return controls.state(readings, user, since === undefined ? undefined : Number(since))
  })
  // The burst starts here, not in the page: a browser opens at most 6 connections to one host, so
  // 50 requests from it would go out a few at a time. Each one carries the page's own token.
  app.post('/demo/burst', { config, schema: { hide: true, body: Type.Object({ user_id: Id }, { additionalProperties: false }) } }, (request) => {
    const authorization = request.headers.authorization ?? ''
    const post: PostRating = async (rating) => {
      const res = await app.inject({ method: 'POST', url: '/v1/rating', headers: { authorization }, payload: rating })
      return { status: res.statusCode, headers: res.headers }
    }
    return controls.burst(post, request.body.user_id, DEMO_ITEMS)
  })
  app.post('/demo/outage', { config, schema: { hide: true } }, () => controls.outage())
  app.post('/demo/drop-socket', { config, schema: { hide: true } }, async () => controls.dropSocket())
}

export default demoControlRoutes
