import { Cluster } from 'ioredis'
import type { RedisClient } from './client.js'

/** Messages of one channel, in the order Redis sent them. */
export type MessageHandler = (payload: string) => void

/**
 * One replica's sharded pub/sub connection (SSUBSCRIBE), shared by everything that listens: user
 * channels of the SSE streams open here, the readiness canary, the queue's doorbells. Pub/sub is
 * at-most-once: whatever was published while the connection was down is gone, so after every
 * reconnect it subscribes every channel again and tells `onReconnect` listeners at once (before
 * any message of the new connection), with a promise of Redis's confirmation: a listener that
 * reads its history from its last id once that resolves misses nothing.
 */
export class RedisSubscriber {
  private readonly handlers = new Map<string, MessageHandler>()
  private readonly reconnectListeners = new Set<(subscribed: Promise<void>) => void>()
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
    connection.on(this.cluster ? 'subscribersReady' : 'ready', () => this.resubscribe())
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

  /** `listener` hears of each reconnect, with the promise that every channel is subscribed again. Returns removal. */
  onReconnect(listener: (subscribed: Promise<void>) => void): () => void {
    this.reconnectListeners.add(listener)
    return () => void this.reconnectListeners.delete(listener)
  }

  get channels(): number {
    return this.handlers.size
  }

  private resubscribe(): void {
    const subscribed = this.subscribeAll()
    subscribed.catch(() => {
      // Down again: the next ready event resubscribes.
    })
    for (const listener of this.reconnectListeners) listener(subscribed)
  }

  private async subscribeAll(): Promise<void> {
    const channels = [...this.handlers.keys()]
    // On a Cluster the group resubscribed already but does not wait for Redis's answer:
    // unsubscribe and subscribe again, awaited, so that catch-up reads start after it.
    if (this.cluster) await Promise.all(channels.map((channel) => this.connection.sunsubscribe(channel)))
    await Promise.all(channels.filter((channel) => this.handlers.has(channel)).map((channel) => this.connection.ssubscribe(channel)))
  }
}
