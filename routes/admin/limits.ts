import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { BEARER, errorResponses, HttpError } from '../../src/errors.js'
import { AgentLimitsSchema } from '../../src/limits/overrides.js'
import { Id } from '../../src/rating.js'

const Params = Type.Object({ agent_id: Id })
const Override = Type.Object({ agent_id: Type.String(), limits: AgentLimitsSchema })
const List = Type.Object({ overrides: Type.Array(Override) })

/** Per-agent overrides of the bucket policies, applied by every replica within a second. */
const limits: FastifyPluginAsyncTypebox = async (app) => {
  const common = { tags: ['admin'], security: BEARER }
  const { overrides } = app.buckets
  app.get(
    '/admin/limits',
    { schema: { ...common, summary: "Every agent's bucket overrides", response: { 200: List, ...errorResponses(401, 403) } } },
    async () => ({ overrides: [...(await overrides.list())].map(([agent_id, limits]) => ({ agent_id, limits })) })
  )
  app.put(
    '/admin/limits/:agent_id',
    {
      schema: {
        ...common,
        summary: "Set an agent's own refill_rate and capacity per action (replaces its overrides)",
        params: Params,
        body: AgentLimitsSchema,
        response: { 200: Override, ...errorResponses(400, 401, 403, 503) }
      }
    },
    async (request) => {
      await overrides.set(request.params.agent_id, request.body)
      return { agent_id: request.params.agent_id, limits: request.body }
    }
  )
  app.delete(
    '/admin/limits/:agent_id',
    {
      schema: {
        ...common,
        summary: "Remove an agent's overrides: the policies apply to it again",
        params: Params,
        response: { 204: Type.Null(), ...errorResponses(400, 401, 403, 404) }
      }
    },
    async (request, reply) => {
      if (!(await overrides.remove(request.params.agent_id))) throw new HttpError(404, `agent ${request.params.agent_id} has no overrides`)
      return reply.code(204).send(null)
    }
  )
}

export default limits
