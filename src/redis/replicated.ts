import type { ChainableCommander } from 'ioredis'
import type { RedisClient } from './client.js'

/**
 * Writes that count only once `replicas` replicas hold them (REDIS_WAIT_REPLICAS). They go
 * through a connection of their own: WAIT blocks the connection it runs on, and the shared one
 * carries the bucket decisions.
 */
export interface ReplicatedWrites {
  connection: RedisClient
  replicas: number
  timeoutMs: number
}

/** Fewer replicas than asked acknowledged the writes in time: they may die with the primary. */
export class ReplicationTimeout extends Error {
  override name = 'ReplicationTimeout'
}

/**
 * Executes a pipeline of writes, throwing the first command error. With `replicated`, WAIT
 * rides at the end of the pipeline: it runs on the same connection right after the writes
 * (on a Cluster, on the primary of their slot), so it counts exactly the replicas that hold
 * them. Fewer than asked within the timeout throws ReplicationTimeout; the writes stay on the
 * primary, so a retry may store them twice (consumers deduplicate).
 */
export async function execReplicated(pipeline: ChainableCommander, replicated?: ReplicatedWrites): Promise<void> {
  if (replicated) pipeline.call('WAIT', replicated.replicas, replicated.timeoutMs)
  const results = (await pipeline.exec()) ?? []
  const failed = results.find(([err]) => err)
  if (failed) throw failed[0]
  if (!replicated) return
  const acknowledged = Number(results.at(-1)?.[1])
  if (acknowledged < replicated.replicas) {
    throw new ReplicationTimeout(
      `${acknowledged} of ${replicated.replicas} Redis replicas acknowledged the write within ${replicated.timeoutMs} ms`
    )
  }
}
