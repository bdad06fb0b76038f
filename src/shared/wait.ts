import { once, type EventEmitter } from 'node:events'
import { clampDelay } from './clock.js'

/**
 * Resolves true once `emitter` emits `event` (or 'error', which ends the wait too), false
 * after `ms`; never rejects.
 */
export async function onceWithin(emitter: EventEmitter, event: string, ms: number): Promise<boolean> {
  try {
    await once(emitter, event, { signal: AbortSignal.timeout(ms) })
    return true
  } catch (err) {
    return !(err instanceof Error && err.name === 'AbortError')
  }
}

/** Resolves true when `promise` settles within `ms`, false otherwise; never rejects. */
export function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), clampDelay(ms))
    const done = () => {
      clearTimeout(timer)
      resolve(true)
    }
    promise.then(done, done)
  })
}

/**
 * A sleep that another part of the program can cut short: a reader waiting for room, new
 * entries or close. One sleeper at a time; wake() with nobody asleep is a no-op.
 */
export class Wakeable {
  private waking: (() => void) | null = null

  /** Until wake(), or `ms` passed (no timeout when omitted). */
  sleep(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => this.wake(), clampDelay(ms))
      this.waking = () => {
        clearTimeout(timer)
        this.waking = null
        resolve()
      }
    })
  }

  wake(): void {
    this.waking?.()
  }

  get asleep(): boolean {
    return this.waking !== null
  }
}
