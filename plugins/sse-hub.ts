import fp from 'fastify-plugin'
// PLACEHOLDER: replaced by the SSE work.
export default fp(async () => {}, { name: 'sse-hub' })
