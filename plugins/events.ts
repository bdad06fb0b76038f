import fp from 'fastify-plugin'
import type { ScoreEvent } from '../src/domain/rating.js'
import type { Source } from './openclaw.js'

/** A published score event with its id (ordered across all replicas). */
export interface StoredEvent {
  id: string
  event: ScoreEvent
}

export interface Replay {
  /** Set when the requested id is older than the history: the oldest id still held. */
  gap?: string
  events: StoredEvent[]
}

declare module 'fastify' {
  interface FastifyInstance {
    events: {
      /** Store in the user's history, remember as latest score, fan out to every replica; resolves to the id. */
      publish(event: ScoreEvent, source: Source): Promise<string>
      /** Every event reaching this replica through the fan-out, in id order. Returns unsubscribe. */
      subscribe(listener: (event: StoredEvent) => void): () => void
      /** What the user missed after `afterId`, in order (userId null: every user). */
      replay(userId: string | null, afterId: string): Promise<Replay>
      /** The latest score event per listed item for a user. */
      latest(userId: string, items: string[]): Promise<ScoreEvent[]>
    }
  }
}

// PLACEHOLDER: replaced by the SSE work.
export default fp(async () => {}, { name: 'events' })
