import type { Cancel, Clock } from '../../src/shared/clock.js'

interface Timer {
  at: number
  every?: number
  run: () => void
}

/** Lets microtasks, nextTick callbacks and stream events run. */
export const settle = () => new Promise((resolve) => setImmediate(resolve))

/** Unix milliseconds when the fake clock starts (any fixed instant). */
const WALL_START_MS = 1_800_000_000_000

/**
 * A clock that moves only when a test says so; what is scheduled on it runs, in time order, as
 * time passes. Starts at 1000 ms (like performance.now(), never 0: lru-cache reads 0 as "no TTL").
 */
export class FakeClock implements Clock {
  private current = 1000
  private readonly timers = new Set<Timer>()

  now = (): number => this.current

  wallMs = (): number => WALL_START_MS + this.current

  after(ms: number, run: () => void): Cancel {
    return this.add({ at: this.current + Math.max(0, ms), run })
  }

  every(ms: number, run: () => void): Cancel {
    return this.add({ at: this.current + ms, every: ms, run })
  }

  /** Moves time forward by `ms`, running each timer due on the way at its own instant. */
  advance(ms: number): void {
    const until = this.current + ms
    for (let timer = this.nextDue(until); timer; timer = this.nextDue(until)) this.fire(timer)
    this.current = until
  }

  /** Like advance, letting I/O and promises settle after each timer (streams react to what it did). */
  async pass(ms: number): Promise<void> {
    const until = this.current + ms
    for (let timer = this.nextDue(until); timer; timer = this.nextDue(until)) {
      this.fire(timer)
      await settle()
    }
    this.current = until
    await settle()
  }

  /** Moves time forward without running anything: a process that was paused (its timers run late). */
  jump(ms: number): void {
    this.current += ms
  }

  /** Milliseconds until the next timer is due (null: none is scheduled). */
  nextIn(): number | null {
    const next = this.nextDue(Infinity)
    return next ? Math.max(0, next.at - this.current) : null
  }

  private add(timer: Timer): Cancel {
    this.timers.add(timer)
    return () => void this.timers.delete(timer)
  }

  private fire(timer: Timer): void {
    this.current = Math.max(this.current, timer.at)
    if (timer.every) timer.at += timer.every
    else this.timers.delete(timer)
    timer.run()
  }

  private nextDue(until: number): Timer | undefined {
    let earliest: Timer | undefined
    for (const timer of this.timers) if (timer.at <= until && (!earliest || timer.at < earliest.at)) earliest = timer
    return earliest
  }
}
