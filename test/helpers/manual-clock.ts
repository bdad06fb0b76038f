import type { HubClock } from '../../src/sse/clock.js'

/** Lets microtasks, nextTick callbacks and stream events run. */
export const settle = () => new Promise((resolve) => setImmediate(resolve))

/** Time that moves only when the test says so; due timers run in order, each followed by what it set off. */
export class ManualClock implements HubClock {
  private elapsed = 0
  private readonly startWallMs = 1_800_000_000_000
  private readonly timers = new Map<number, { at: number; every?: number; task: () => void }>()
  private nextTimer = 0

  monotonicMs = () => this.elapsed
  wallMs = () => this.startWallMs + this.elapsed

  after(ms: number, task: () => void): () => void {
    return this.add({ at: this.elapsed + ms, task })
  }

  every(ms: number, task: () => void): () => void {
    return this.add({ at: this.elapsed + ms, every: ms, task })
  }

  async advance(ms: number): Promise<void> {
    const end = this.elapsed + ms
    for (;;) {
      const due = [...this.timers].filter(([, timer]) => timer.at <= end).sort(([, left], [, right]) => left.at - right.at)[0]
      if (!due) break
      const [handle, timer] = due
      this.elapsed = timer.at
      if (timer.every) timer.at += timer.every
      else this.timers.delete(handle)
      timer.task()
      await settle()
    }
    this.elapsed = end
    await settle()
  }

  private add(timer: { at: number; every?: number; task: () => void }): () => void {
    const handle = this.nextTimer++
    this.timers.set(handle, timer)
    return () => void this.timers.delete(handle)
  }
}

