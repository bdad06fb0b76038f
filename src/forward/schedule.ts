import type { Cancel, Clock } from '../shared/clock.js'
import { AgentLanes } from './agent-lanes.js'

/**
 * When each held rating is tried next: agents' lanes served round-robin, a lane held while its
 * agent's bucket is empty, every call paused after OpenClaw's 429, retries after a backoff
 * delay. `next()` hands out what is due now; `onDue` is called when a wait is over.
 */
export class ForwardSchedule<T> {
  private readonly lanes = new AgentLanes<T>()
  private readonly retryTimers = new Set<Cancel>()
  /** When `onDue` is called next: a lane's wait or the pause ends. */
  private alarm: { at: number; cancel: Cancel } | null = null
  /** OpenClaw answered 429: nothing is due before this instant. */
  private pausedUntil = 0

  constructor(
    private readonly clock: Clock,
    private readonly onDue: () => void
  ) {}

  /** Due now, behind what its agent already has waiting. */
  add(agent: string, item: T): void {
    this.lanes.push(agent, item)
  }

  /** The agent's bucket is empty for `waitMs`: the item stays first of its lane, the lane waits. */
  afterBucket(agent: string, item: T, waitMs: number): void {
    this.lanes.pushFront(agent, item)
    this.lanes.holdUntil(agent, this.clock.now() + waitMs)
  }

  /** OpenClaw asked for a pause of `waitMs`: the item stays first of its lane, every call waits. */
  afterPause(agent: string, item: T, waitMs: number): void {
    this.lanes.pushFront(agent, item)
    this.pausedUntil = Math.max(this.pausedUntil, this.clock.now() + waitMs)
  }

  /** Back at the end of its lane once `delayMs` passed. */
  retry(agent: string, item: T, delayMs: number): void {
    const cancel = this.clock.after(delayMs, () => {
      this.retryTimers.delete(cancel)
      this.lanes.push(agent, item)
      this.onDue()
    })
    this.retryTimers.add(cancel)
  }

  /** The next item due now, round-robin over agents; null when none is (then `onDue` follows once one is). */
  next(): T | null {
    const now = this.clock.now()
    if (this.pausedUntil > now) return this.wakeAt(this.pausedUntil)
    const next = this.lanes.next(now)
    if (!next) return null
    if ('wakeAt' in next) return this.wakeAt(next.wakeAt)
    return next.item
  }

  /** Cancels every timer: nothing is due any more. */
  close(): void {
    this.alarm?.cancel()
    this.alarm = null
    for (const cancel of this.retryTimers) cancel()
    this.retryTimers.clear()
  }

  private wakeAt(at: number): null {
    if (this.alarm && this.alarm.at <= at) return null
    this.alarm?.cancel()
    const cancel = this.clock.after(Math.max(0, at - this.clock.now()), () => {
      this.alarm = null
      this.onDue()
    })
    this.alarm = { at, cancel }
    return null
  }
}
