import { LRUCache } from 'lru-cache'

/**
 * Tokens whose signature and claims were already checked, kept until they expire (and at most
 * `maxAgeMs`, so a key rotated out stops being trusted soon): a repeat request skips the
 * signature check, which is most of what authentication costs. At most `maxEntries`, least
 * recently used out first.
 */
export class VerifiedTokens<T extends {}> {
  private readonly entries: LRUCache<string, T>

  constructor(
    maxEntries: number,
    private readonly maxAgeMs: number,
    /** Wall-clock milliseconds (token expiries are wall-clock). */
    private readonly clock: () => number = Date.now
  ) {
    // ttlResolution 0: the clock is read on every check, so a fake clock is obeyed at once.
    this.entries = new LRUCache({ max: maxEntries, ttlResolution: 0, perf: { now: clock } })
  }

  get(token: string): T | undefined {
    return this.entries.get(token)
  }

  /** `expiresAt`: the token's `exp` in ms (none: only `maxAgeMs` bounds it). */
  set(token: string, value: T, expiresAt: number | undefined): void {
    const now = this.clock()
    // lru-cache keeps an entry while its age is <= ttl; a token is refused from its exp on, hence the 1 ms.
    const ttl = Math.min(expiresAt ?? Infinity, now + this.maxAgeMs) - now - 1
    // A ttl of 0 would mean "forever" to lru-cache: a token at its end is not kept at all.
    if (ttl > 0) this.entries.set(token, value, { ttl, start: now })
  }

  get size(): number {
    return this.entries.size
  }
}
