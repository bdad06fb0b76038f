import { clampDelay } from '../shared/clock.js'

/**
 * The queue depth as last read, the high-water mark (`full`) and the low-water mark (half of
 * it) that releases `waitForRoom`: hysteresis, so the feed does not flap around one value.
 */
export class DepthGauge {
  private depth = 0
  private waiters: (() => void)[] = []
  private poller: NodeJS.Timeout | undefined
  private reading = false

  constructor(
    private readonly max: number,
    private readonly report: (depth: number) => void
  ) {}

  set(depth: number): void {
    this.depth = depth
    this.report(depth)
    if (depth < this.max / 2) this.release()
  }

  add(count: number): void {
    this.set(this.depth + count)
  }

  full(): boolean {
    return this.depth >= this.max
  }

  waitForRoom(): Promise<void> {
    if (this.depth < this.max / 2) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push(resolve))
  }

  /** Reads the depth every `everyMs`, never a call per rating; a failed read keeps the last value. */
  poll(read: () => Promise<number>, everyMs: number): void {
    this.poller = setInterval(() => {
      if (this.reading) return
      this.reading = true
      read()
        .then((depth) => this.set(depth))
        .catch(() => {}) // the queue is away: its own calls report the outage
        .finally(() => (this.reading = false))
    }, clampDelay(everyMs)).unref()
  }

  /** Stops polling and lets every waiter go. */
  close(): void {
    clearInterval(this.poller)
    this.release()
  }

  private release(): void {
    for (const resolve of this.waiters.splice(0)) resolve()
  }
}
