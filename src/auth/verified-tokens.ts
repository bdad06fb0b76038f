/**
 * Tokens whose signature and claims were already checked, kept until they expire (and at most
 * `maxAgeMs`, so a key rotated out stops being trusted soon): a repeat request skips the
 * signature check, which is most of what authentication costs. Bounded: oldest out first.
 */
export class VerifiedTokens<T> {
  private readonly entries = new Map<string, { value: T; until: number }>()

  constructor(
    private readonly maxEntries: number,
    private readonly maxAgeMs: number
  ) {}

  get(token: string, now: number): T | undefined {
    const entry = this.entries.get(token)
    if (!entry) return undefined
    if (entry.until <= now) {
      this.entries.delete(token)
      return undefined
    }
    return entry.value
  }

  /** `expiresAt`: the token's `exp` in ms (none: only `maxAgeMs` bounds it). */
  set(token: string, value: T, expiresAt: number | undefined, now: number): void {
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value as string)
    this.entries.set(token, { value, until: Math.min(expiresAt ?? Infinity, now + this.maxAgeMs) })
  }

  get size(): number {
    return this.entries.size
  }
}
