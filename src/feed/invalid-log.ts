import type { Log } from '../logger.js'
import type { InvalidReason } from './feed-message.js'

/** At most one log line per invalid reason per window (with how many were skipped). */
const WINDOW_MS = 10_000
const EXCERPT_CHARS = 80

/** Logs skipped feed messages without letting a flood of them flood the log. */
export class InvalidMessageLog {
  private readonly last = new Map<InvalidReason, { at: number; skipped: number }>()

  constructor(private readonly log: Log) {}

  skipped(reason: InvalidReason, detail: string, data: Buffer, isBinary: boolean): void {
    const now = performance.now()
    const last = this.last.get(reason)
    if (last && now - last.at < WINDOW_MS) {
      last.skipped++
      return
    }
    this.last.set(reason, { at: now, skipped: 0 })
    const excerpt = isBinary ? undefined : data.subarray(0, EXCERPT_CHARS * 4).toString('utf8').slice(0, EXCERPT_CHARS)
    this.log.warn({ reason, detail, excerpt, skippedSinceLastLog: last?.skipped ?? 0 }, 'moltbook message skipped')
  }
}
