/**
 * A per-stream delivery buffer that keeps only the newest value per key (conflation).
 * A replaced value moves to the back, so values leave in the order their newest version
 * arrived: with ids arriving in ascending order, what is sent stays in ascending id order,
 * which keeps a client's Last-Event-ID a safe resume point.
 */
export class ConflatingBuffer<T> {
  /** Made on the first push: most streams idle and never hold anything. */
  private entries: Map<string, { value: T; size: number }> | undefined
  private bytes = 0
  /** Numbers the values kept beside an older one of their key (`mayConflate` false). */
  private kept = 0

  constructor(
    private readonly keyOf: (value: T) => string,
    private readonly sizeOf: (value: T) => number = () => 1
  ) {}

  /** True when a value of `value`'s key is held (a push would replace it, if it may). */
  holdsKeyOf(value: T): boolean {
    return this.entries?.has(this.keyOf(value)) ?? false
  }

  /**
   * Adds a value; true when it replaced an older one for the same key. `mayConflate` false keeps
   * both (the new one under a key of its own, which nothing replaces later).
   */
  push(value: T, mayConflate = true): boolean {
    const entries = (this.entries ??= new Map())
    let key = this.keyOf(value)
    if (!mayConflate && entries.has(key)) key = `\u0001${++this.kept}`
    const old = entries.get(key)
    if (old) {
      entries.delete(key)
      this.bytes -= old.size
    }
    const size = this.sizeOf(value)
    entries.set(key, { value, size })
    this.bytes += size
    return old !== undefined
  }

  /** The oldest value, kept. */
  first(): T | undefined {
    return this.entries?.values().next().value?.value
  }

  /** The oldest value, removed. */
  shift(): T | undefined {
    if (!this.entries) return undefined
    const first = this.entries.entries().next()
    if (first.done) return undefined
    const [key, entry] = first.value
    this.entries.delete(key)
    this.bytes -= entry.size
    return entry.value
  }

  clear(): void {
    this.entries?.clear()
    this.bytes = 0
  }

  get length(): number {
    return this.entries?.size ?? 0
  }

  /** Sum of `sizeOf` over the values held. */
  get size(): number {
    return this.bytes
  }
}
