import type { Log } from '../logger.js'
import { systemClock, type Cancel, type Clock } from '../shared/clock.js'
import { OutageLog } from '../shared/outage-log.js'
import type { Broadcast, BroadcastMessage } from './broadcast.js'

/** How often every replica reloads admin state by default: a missed broadcast is caught up within it. */
export const RELOAD_MS = 1000

export type ChangeListener<V> = (key: string, value: V | null) => void

export interface ReplicatedMapDeps<V> {
  broadcast: Broadcast
  /** The broadcast messages of this map carry this topic. */
  topic: string
  /** The whole map as the store holds it now. */
  load(): Promise<Map<string, V>>
  log: Log
  clock?: Clock
}

/**
 * A small map every replica keeps in memory (admin state: revocations, per-agent limits), kept
 * in a store by whoever changes it. A change reaches the other replicas by broadcast at once;
 * a periodic reload from the store makes a replica that missed a broadcast converge anyway.
 */
export class ReplicatedMap<V> {
  private entries = new Map<string, V>()
  private readonly listeners = new Set<ChangeListener<V>>()
  private readonly outage: OutageLog
  private readonly clock: Clock
  /** Keys changed while a reload was reading the store: that read may predate the change. */
  private changedDuringLoad: Set<string> | null = null
  private loading = false
  private stopReloading: Cancel = () => {}
  private unsubscribe: () => void = () => {}

  constructor(private readonly deps: ReplicatedMapDeps<V>) {
    this.clock = deps.clock ?? systemClock
    this.outage = new OutageLog(deps.log, { down: 'admin state reload failed', up: 'admin state reloaded again' }, { topic: deps.topic })
  }

  /** Loads the map (a failure is logged; the next reload tries again), then follows changes. */
  async start(reloadMs = RELOAD_MS): Promise<void> {
    this.unsubscribe = this.deps.broadcast.subscribe((message) => this.heard(message))
    await this.reload()
    this.stopReloading = this.clock.every(reloadMs, () => void this.reload())
  }

  get(key: string): V | undefined {
    return this.entries.get(key)
  }

  get size(): number {
    return this.entries.size
  }

  snapshot(): Map<string, V> {
    return new Map(this.entries)
  }

  /** Hears every change, local, broadcast or reloaded (value null: removed). Returns unsubscribe. */
  onChange(listener: ChangeListener<V>): () => void {
    this.listeners.add(listener)
    return () => void this.listeners.delete(listener)
  }

  /** Applies a change the caller has just written to the store, here at once and on every replica by broadcast. */
  async publish(key: string, value: V | null): Promise<void> {
    this.apply(key, value)
    await this.deps.broadcast.publish({ topic: this.deps.topic, key, value })
  }

  close(): void {
    this.stopReloading()
    this.unsubscribe()
    this.listeners.clear()
  }

  private heard(message: BroadcastMessage): void {
    if (message.topic === this.deps.topic) this.apply(message.key, (message.value ?? null) as V | null)
  }

  private apply(key: string, value: V | null): void {
    this.changedDuringLoad?.add(key)
    const current = this.entries.get(key) ?? null
    if (JSON.stringify(current) === JSON.stringify(value)) return
    if (value === null) this.entries.delete(key)
    else this.entries.set(key, value)
    for (const listener of this.listeners) listener(key, value)
  }

  private async reload(): Promise<void> {
    if (this.loading) return
    this.loading = true
    const changed = new Set<string>()
    this.changedDuringLoad = changed
    try {
      const loaded = await this.deps.load()
      this.changedDuringLoad = null
      this.outage.up()
      for (const key of [...this.entries.keys()]) if (!loaded.has(key) && !changed.has(key)) this.apply(key, null)
      for (const [key, value] of loaded) if (!changed.has(key)) this.apply(key, value)
    } catch (err) {
      this.outage.down(err)
    } finally {
      this.changedDuringLoad = null
      this.loading = false
    }
  }
}
