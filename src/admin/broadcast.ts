import type { Log } from '../logger.js'
import type { RedisClient } from '../redis/client.js'
import type { Keys } from '../redis/keys.js'

/** One change of replicated admin state: `key` of `topic` is now `value` (null: removed). */
export interface BroadcastMessage {
  topic: string
  key: string
  value: unknown
}

type Listener = (message: BroadcastMessage) => void

/**
 * Tells every replica (this one included) about an admin action at once. At most once: a
 * replica that misses a message catches up by reloading the state it concerns (ReplicatedMap).
 */
export interface Broadcast {
  publish(message: BroadcastMessage): Promise<void>
  /** Returns unsubscribe. */
  subscribe(listener: Listener): () => void
  close(): Promise<void>
}

class Listeners {
  private readonly listeners = new Set<Listener>()

  add(listener: Listener): () => void {
    this.listeners.add(listener)
    return () => void this.listeners.delete(listener)
  }

  notify(message: BroadcastMessage): void {
    for (const listener of this.listeners) listener(message)
  }

  clear(): void {
    this.listeners.clear()
  }
}

/** One process (no Redis): the only replica hears its own messages. */
export class MemoryBroadcast implements Broadcast {
  private readonly listeners = new Listeners()

  async publish(message: BroadcastMessage): Promise<void> {
    this.listeners.notify(message)
  }

  subscribe(listener: Listener): () => void {
    return this.listeners.add(listener)
  }

  async close(): Promise<void> {
    this.listeners.clear()
  }
}

function parse(raw: string): BroadcastMessage | null {
  try {
    const message = JSON.parse(raw) as Partial<BroadcastMessage>
    return typeof message.topic === 'string' && typeof message.key === 'string' ? (message as BroadcastMessage) : null
  } catch {
    return null
  }
}

export interface RedisBroadcastOptions {
  /** A connection of its own in subscriber mode; disconnected by close(). */
  subscriber: RedisClient
  log: Log
}

/**
 * One global Redis pub/sub channel (admin actions are rare; PUBLISH reaches every node of a
 * cluster). The subscription is made again whenever the subscriber connection is ready.
 */
export class RedisBroadcast implements Broadcast {
  private readonly listeners = new Listeners()
  private readonly channel: string
  private readonly subscriber: RedisClient

  constructor(
    private readonly redis: RedisClient,
    keys: Pick<Keys, 'broadcast'>,
    { subscriber, log }: RedisBroadcastOptions
  ) {
    this.channel = keys.broadcast
    this.subscriber = subscriber
    subscriber.on('message', (channel: string, raw: string) => {
      if (channel !== this.channel) return
      const message = parse(raw)
      if (message) this.listeners.notify(message)
      else log.warn({ channel }, 'unreadable admin broadcast ignored')
    })
    const listen = () => {
      subscriber.subscribe(this.channel).catch(() => {
        /* the connection is away: 'ready' calls again once it is back */
      })
    }
    subscriber.on('ready', listen)
    if (subscriber.status === 'ready') listen()
  }

  async publish(message: BroadcastMessage): Promise<void> {
    await this.redis.publish(this.channel, JSON.stringify(message))
  }

  subscribe(listener: Listener): () => void {
    return this.listeners.add(listener)
  }

  async close(): Promise<void> {
    this.listeners.clear()
    this.subscriber.disconnect()
  }
}
