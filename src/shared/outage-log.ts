import type { Log } from '../logger.js'

/**
 * One warning when a kind of trouble starts and one info line when it is over, never a line
 * per failed attempt: a Redis or OpenClaw outage must not flood the log.
 */
export class OutageLog {
  private current: string | null = null

  constructor(
    private readonly log: Log,
    private readonly messages: { down: string; up: string },
    /** Fields on both lines, naming what is out (`{ redis: 'main' }`). */
    private readonly fields: Record<string, unknown> = {}
  ) {}

  /** Trouble of `kind`: logged once until up() or trouble of another kind. */
  down(err: unknown, kind = 'outage'): void {
    if (this.current === kind) return
    this.current = kind
    const reason = err instanceof Error ? err.message : String(err)
    this.log.warn({ ...this.fields, kind, err: reason }, this.messages.down)
  }

  up(): void {
    if (this.current === null) return
    this.log.info({ ...this.fields, kind: this.current }, this.messages.up)
    this.current = null
  }

  get active(): boolean {
    return this.current !== null
  }
}
