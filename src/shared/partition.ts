/**
 * The partition of `id` among `count` (0 ≤ result < count), the same in every replica and every
 * release: FNV-1a over the id's UTF-16 code units. The forward queue is partitioned by agent and
 * the `ratings:all` history by user, so each agent's (user's) entries keep their order.
 */
export function partitionOf(id: string, count: number): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash % count
}
