import { Cluster } from 'ioredis'
import type { RedisClient } from './client.js'

/** Messages of one channel, in the order Redis sent them. */
export type MessageHandler = (payload: string) => void

/**
 * One replica's sharded pub/sub connection (SSUBSCRIBE), shared by everything that listens: user
 * channels of the SSE streams open here, the readiness canary, the queue's doorbells. Pub/sub is
 * at-most-once: whatever was published while the connection was down is gone, so after every
 * reconnect it subscribes every channel again, waits for Redis to confirm, and only then tells
 * `onResubscribed` listeners to catch up from their histories (nothing published after the
 * confirmation can be missed, nothing before it is lost if they read from their last id).
 */
export class RedisSubscriber {
  private readonly handlers = new Map<string, MessageHandler>()
  private readonly resubscribedListeners = new Set<() => void>()
  private readonly cluster: boolean

  constructor(
    private readonly connection: RedisClient,
    /** A handler threw (a message it could not read): the others go on. */
    private readonly onError: (err: unknown) => void
  ) {
    this.cluster = connection instanceof Cluster
    connection.on('smessage', (channel: string, payload: string) => {
      try {
        this.handlers.get(channel)?.(payload)
      } catch (err) {
        this.onError(err)
      }
    })
    // A Cluster resubscribes through its subscriber group and then says so; a single connection
    // (autoResubscribe off) is ready again with no subscription at all.
    connection.on(this.cluster ? 'subscribersReady' : 'ready', () => void this.resubscribe())
  }

  /** Starts delivering `channel`'s messages to `handler`; resolves once Redis confirmed the subscription. */
  async subscribe(channel: string, handler: MessageHandler): Promise<void> {
    this.handlers.set(channel, handler)
    try {
      await this.connection.ssubscribe(channel)
    } catch (err) {
      if (this.handlers.get(channel) === handler) this.handlers.delete(channel)
      throw err
    }
  }

  async unsubscribe(channel: string): Promise<void> {
    if (!this.handlers.delete(channel)) return
    await this.connection.sunsubscribe(channel).catch(() => {
      // Disconnected: the subscription is gone anyway, and is not renewed on reconnect.
    })
  }

  /** `listener` runs after each reconnect, once every channel is subscribed again. Returns removal. */
  onResubscribed(listener: () => void): () => void {
    this.resubscribedListeners.add(listener)
    return () => void this.resubscribedListeners.delete(listener)
  }

  get channels(): number {
    return this.handlers.size
  }

  private async resubscribe(): Promise<void> {
    const channels = [...this.handlers.keys()]
    try {
      // On a Cluster the group resubscribed already but does not wait for Redis's answer:
      // unsubscribe and subscribe again, awaited, so the catch-up reads start after it.
      if (this.cluster) await Promise.all(channels.map((channel) => this.connection.sunsubscribe(channel)))
      await Promise.all(channels.filter((channel) => this.handlers.has(channel)).map((channel) => this.connection.ssubscribe(channel)))
    } catch {
      return // down again: the next ready event resubscribes
    }
    for (const listener of this.resubscribedListeners) listener()
  }
}
