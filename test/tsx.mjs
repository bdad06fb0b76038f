// The suite's TypeScript loader (package.json "tap" → node-arg): tsx, which @fastify/autoload
// does not detect by itself when it is imported this way, so it is told.
process.env.FASTIFY_AUTOLOAD_TYPESCRIPT ??= '1'
await import('tsx')
