import { Wakeable } from '../shared/wait.js'
import { parseQueued, type QueueEntry, type QueuedRating, type QueueStore } from './queue.js'

/** Process memory: one replica, lost with the process (no REDIS_URL). */
export class MemoryQueueStore implements QueueStore {
  private readonly unacked = new Map<string, string>()
  private fresh: string[] = []
  private seq = 0
  /** A blocked read, woken by add() or close(). */
  private readonly reader = new Wakeable()
  private closed = false

  async add(values: QueuedRating[]): Promise<void> {
    for (const value of values) {
      const id = String(++this.seq)
      this.unacked.set(id, JSON.stringify(value))
      this.fresh.push(id)
    }
    this.reader.wake()
  }

  async read(count: number, blockMs: number): Promise<QueueEntry[]> {
    if (this.fresh.length === 0 && !this.closed) await this.reader.sleep(blockMs)
    return this.fresh.splice(0, count).map((id) => ({ id, value: parseQueued(this.unacked.get(id) ?? '') }))
  }

  async ack(id: string): Promise<void> {
    this.unacked.delete(id)
  }

  async touch(): Promise<void> {}

  async depth(): Promise<number> {
    return this.unacked.size
  }

  async depths(): Promise<number[]> {
    return [this.unacked.size]
  }

  async close(): Promise<void> {
    this.closed = true
    this.reader.wake()
  }
}
