export type Listener<T> = (value: T) => void

/**
 * Listeners of every user's events and listeners of one user's: a stream for one user never
 * looks at the others' events. A listener that throws does not keep the value from the rest.
 */
export class ListenerIndex<T> {
  private readonly everyone = new Set<Listener<T>>()
  private readonly byUser = new Map<string, Set<Listener<T>>>()

  constructor(private readonly onError: (err: unknown) => void) {}

  /** `userId` null: every user's values. Returns the function that removes the listener. */
  add(listener: Listener<T>, userId: string | null): () => void {
    if (userId === null) {
      this.everyone.add(listener)
      return () => void this.everyone.delete(listener)
    }
    const listeners = this.byUser.get(userId) ?? new Set<Listener<T>>()
    this.byUser.set(userId, listeners)
    listeners.add(listener)
    return () => {
      listeners.delete(listener)
      if (listeners.size === 0 && this.byUser.get(userId) === listeners) this.byUser.delete(userId)
    }
  }

  /** Hands `value`, which belongs to `userId`, to every-user listeners, then to that user's. */
  notify(userId: string, value: T): void {
    this.call(this.everyone, value)
    const listeners = this.byUser.get(userId)
    if (listeners) this.call(listeners, value)
  }

  /** No listener at all: nothing to prepare a value for. */
  get empty(): boolean {
    return this.everyone.size === 0 && this.byUser.size === 0
  }

  clear(): void {
    this.everyone.clear()
    this.byUser.clear()
  }

  private call(listeners: Set<Listener<T>>, value: T): void {
    for (const listener of listeners) {
      try {
        listener(value)
      } catch (err) {
        this.onError(err)
      }
    }
  }
}
