import type { Cancel, Clock } from '../shared/clock.js'

/** What the heartbeats beat: an open stream. */
export interface Beating {
  beat(): void
}

/**
 * Beats each member every `intervalMs`, counted from when it joined, on one timer for all of them:
 * a timer per stream (its Timeout, closures and cancel function) weighed more than the rest of an
 * idle stream. Members share the interval, so the order they joined in stays the order they are
 * due in: a Map keeps insertion order, and a member beaten goes back in at the end. A wake-up
 * also beats the members due within a sixteenth of the interval, so that streams opened together
 * share their wake-ups.
 */
export class Heartbeats {
  /** Member → when it is due (clock ms, whole: a small integer is stored inline), earliest first. */
  private readonly due = new Map<Beating, number>()
  private readonly slackMs: number
  private cancel: Cancel | undefined

  constructor(
    private readonly clock: Clock,
    private readonly intervalMs: number
  ) {
    this.slackMs = intervalMs / 16
  }

  add(member: Beating): void {
    this.due.set(member, Math.ceil(this.clock.now() + this.intervalMs))
    if (!this.cancel) this.arm()
  }

  delete(member: Beating): void {
    this.due.delete(member)
    if (this.due.size > 0) return
    this.cancel?.()
    this.cancel = undefined
  }

  private arm(): void {
    const first = this.due.values().next()
    if (!first.done) this.cancel = this.clock.after(first.value - this.clock.now(), () => this.wake())
  }

  private wake(): void {
    this.cancel = undefined
    const now = this.clock.now()
    for (const [member, at] of this.due) {
      if (at > now + this.slackMs) break
      this.due.delete(member)
      // A wake-up late by about an interval or more (a paused process) beats once, not once per interval missed.
      const next = at + this.intervalMs
      this.due.set(member, next > now + this.slackMs ? next : Math.ceil(now + this.intervalMs))
      member.beat()
    }
    this.arm()
  }
}
