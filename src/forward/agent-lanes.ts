/**
 * Per-agent FIFO lanes served round-robin, so one agent's backlog never blocks another.
 * A lane can be held until an instant (its forwarding bucket is empty until then); the
 * caller asks `next(now)` and, when nothing is ready, learns when to ask again.
 * Times are milliseconds of any monotonic clock.
 */
export type Next<T> = { item: T; agent: string } | { wakeAt: number } | null

interface Lane<T> {
  agent: string
  items: T[]
  heldUntil: number
}

export class AgentLanes<T> {
  private readonly lanes = new Map<string, Lane<T>>()
  /** Agents with items, in serving order; the cursor walks it round-robin. */
  private readonly ring: Lane<T>[] = []
  private cursor = 0
  private count = 0

  get size(): number {
    return this.count
  }

  push(agent: string, item: T): void {
    this.lane(agent).items.push(item)
    this.count++
  }

  /** Puts an item back at the head of its lane (it keeps its turn within the agent). */
  pushFront(agent: string, item: T): void {
    this.lane(agent).items.unshift(item)
    this.count++
  }

  /** Nothing of this agent is served before `until`. */
  holdUntil(agent: string, until: number): void {
    this.lane(agent).heldUntil = until
  }

  /** The next ready item (round-robin over agents), else when the earliest held lane frees, else null. */
  next(now: number): Next<T> {
    let wakeAt = Infinity
    for (let offset = 0; offset < this.ring.length; offset++) {
      const index = (this.cursor + offset) % this.ring.length
      const lane = this.ring[index]
      if (lane.heldUntil > now) {
        wakeAt = Math.min(wakeAt, lane.heldUntil)
        continue
      }
      const item = lane.items.shift() as T
      this.count--
      if (lane.items.length === 0) {
        this.lanes.delete(lane.agent)
        this.ring.splice(index, 1)
        this.cursor = this.ring.length ? index % this.ring.length : 0
      } else {
        this.cursor = (index + 1) % this.ring.length
      }
      return { item, agent: lane.agent }
    }
    return wakeAt === Infinity ? null : { wakeAt }
  }

  private lane(agent: string): Lane<T> {
    let lane = this.lanes.get(agent)
    if (!lane) {
      lane = { agent, items: [], heldUntil: 0 }
      this.lanes.set(agent, lane)
      this.ring.push(lane)
    }
    return lane
  }
}
