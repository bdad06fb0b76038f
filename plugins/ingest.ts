import fp from 'fastify-plugin'
// PLACEHOLDER: replaced by the ingest work.
export default fp(async () => {}, { name: 'ingest' })
