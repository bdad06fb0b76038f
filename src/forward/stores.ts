import type { RedisClient } from '../redis/client.js'
import type { Keys } from '../redis/keys.js'
import type { ReplicatedWrites } from '../redis/replicated.js'
import type { RedisSubscriber } from '../redis/subscriber.js'
import { MemoryDeadLetterStore, RedisDeadLetterStore, type DeadLetterStore } from './dead-letters.js'
import { MemoryDedupStore, RedisDedupStore, type DedupStore } from './dedup.js'
import { MemoryQueueStore } from './memory-queue.js'
import type { QueueStore } from './queue.js'
import { RedisQueueStore } from './redis-queue.js'

export interface ForwardStoreOptions {
  /** null: process memory, one replica (no REDIS_URL). */
  redis: RedisClient | null
  keys: Keys
  /** This replica's consumer name and dedup owner. */
  replicaId: string
  partitions: number
  claimMs: number
  dedupTtlSeconds: number
  deadLettersMax: number
  /** Single Redis: a connection of its own for the queue's blocking read. */
  blocking: () => RedisClient
  /** Redis Cluster: where the queue's doorbells ring. */
  subscriber?: RedisSubscriber
  /** REDIS_WAIT_REPLICAS > 0. */
  replicated?: ReplicatedWrites
}

export interface ForwardStores {
  queue: QueueStore
  dedup: DedupStore
  deadLetters: DeadLetterStore
}

/** The forwarder's three stores: in Redis (queue partitioned by agent), or in process memory without Redis. */
export function forwardStores(options: ForwardStoreOptions): ForwardStores {
  const { redis, keys, replicaId, dedupTtlSeconds, deadLettersMax } = options
  if (!redis) {
    return {
      queue: new MemoryQueueStore(),
      dedup: new MemoryDedupStore({ ttlSeconds: dedupTtlSeconds }),
      deadLetters: new MemoryDeadLetterStore(deadLettersMax)
    }
  }
  // A single Redis blocks one read over every partition; a Cluster cannot, and rings doorbells instead.
  const wake = redis.isCluster ? { subscriber: options.subscriber } : { blocking: options.blocking() }
  const { partitions, claimMs, replicated } = options
  return {
    queue: new RedisQueueStore(redis, keys, { ...wake, partitions, claimMs, consumer: replicaId, replicated }),
    dedup: new RedisDedupStore(redis, keys, { ttlSeconds: dedupTtlSeconds, owner: replicaId }),
    deadLetters: new RedisDeadLetterStore(redis, keys, deadLettersMax)
  }
}
