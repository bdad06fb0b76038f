import fp from 'fastify-plugin'
import type { FeedRating } from '../src/domain/rating.js'

declare module 'fastify' {
  interface FastifyInstance {
    forwarder: {
      /** Durably queue feed ratings (read off the socket at `readAt`, Date.now() ms, for the feed-to-publish latency). */
      enqueue(ratings: FeedRating[], readAt: number): Promise<void>
      /** True while the queue is above its high-water mark: the feed must pause. */
      full(): boolean
      /** Resolves once the queue is below its low-water mark. */
      waitForRoom(): Promise<void>
    }
  }
}

// PLACEHOLDER: replaced by the forwarder work.
export default fp(async () => {}, { name: 'forwarder' })
