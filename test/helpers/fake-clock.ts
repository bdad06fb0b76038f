import type { Cancel, Clock } from '../../src/shared/clock.js'

interface Timer {
  at: number
  run: () => void
}

/**
 * A clock that moves only when a test says so; what is scheduled on it runs, in time order, as
 * time passes. Starts at 1000 ms (like performance.now(), never 0).
 */
export class FakeClock implements Clock {
  private current = 1000
  private readonly timers = new Set<Timer>()

  now = (): number => this.current

  after(ms: number, run: () => void): Cancel {
    const timer = { at: this.current + Math.max(0, ms), run }
    this.timers.add(timer)
    return () => this.timers.delete(timer)
  }

  /** Moves time forward by `ms`, running each timer due on the way at its own instant. */
  advance(ms: number): void {
    const until = this.current + ms
    for (let timer = this.nextDue(until); timer; timer = this.nextDue(until)) {
      this.timers.delete(timer)
      this.current = Math.max(this.current, timer.at)
      timer.run()
    }
    this.current = until
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

  private nextDue(until: number): Timer | undefined {
    let earliest: Timer | undefined
    for (const timer of this.timers) if (timer.at <= until && (!earliest || timer.at < earliest.at)) earliest = timer
    return earliest
  }
}
