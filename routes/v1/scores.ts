import type { FastifyInstance } from 'fastify'
// PLACEHOLDER: replaced by the work that owns this route.
export default async function (_app: FastifyInstance) {}
