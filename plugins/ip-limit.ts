import fp from 'fastify-plugin'
// PLACEHOLDER: replaced by the buckets work (pre-auth per-IP limit with @fastify/rate-limit).
export default fp(async () => {}, { name: 'ip-limit' })
