import type { ClientContext, Result } from 'ioredis'
import type { RedisClient } from '../redis/client.js'
import type { Metrics } from '../metrics.js'
import { compareEventIds, eventIdFromLex, isEventId, lexEventId, nextEventId } from './event-id.js'
import type { ScoreEvent } from '../rating.js'
import type { Keys } from '../redis/keys.js'
import { defineScripts } from '../redis/scripts.js'

/** A published score event with its id (ordered across all replicas). */
export interface StoredEvent {
  id: string
  event: ScoreEvent
}

export interface Replay {
  /** Set when the requested id is older than the history: the oldest id still held. */
  gap?: string
  events: StoredEvent[]
}

export interface EventLimits {
  historyMax: number
  historyTtlS: number
  scoresTtlS: number
  streamMax: number
}

/**
 * The event bus: per-user history, latest score per item, and the fan-out that hands every
 * published event to every replica's `onEvent`, in id order.
 */
export interface EventStore {
  publish(event: ScoreEvent): Promise<string>
  replay(userId: string | null, afterId: string): Promise<Replay>
  latest(userId: string, items: string[]): Promise<ScoreEvent[]>
  /** Starts the fan-out reader; `onEvent` gets every event published by any replica from now on. */
  start(onEvent: (event: StoredEvent) => void): Promise<void>
  /** Sends a canary through the fan-out path: null once it came back, else the reason. */
  canary(timeoutMs: number): Promise<string | null>
  close(): Promise<void>
}

const after = (afterId: string) => (e: StoredEvent) => compareEventIds(e.id, afterId) > 0

/** One process (demo, single replica): same ids and semantics, history bounded by count only. */
export class MemoryEventStore implements EventStore {
  private lastId: string | null = null
  private readonly all: StoredEvent[] = []
  private allTrimmed: string | null = null
  private readonly histories = new Map<string, { events: StoredEvent[]; trimmed: string | null }>()
  private readonly scores = new Map<string, Map<string, ScoreEvent>>()
  private onEvent: (event: StoredEvent) => void = () => {}

  constructor(private readonly limits: EventLimits) {}

  async publish(event: ScoreEvent): Promise<string> {
    const id = nextEventId(this.lastId, Date.now())
    this.lastId = id
    const stored = { id, event }
    this.all.push(stored)
    if (this.all.length > this.limits.streamMax) this.allTrimmed = this.all.shift()?.id ?? null
    const history = this.histories.get(event.user_id) ?? { events: [], trimmed: null }
    this.histories.set(event.user_id, history)
    history.events.push(stored)
    if (history.events.length > this.limits.historyMax) history.trimmed = history.events.shift()?.id ?? null
    const scores = this.scores.get(event.user_id) ?? new Map<string, ScoreEvent>()
    this.scores.set(event.user_id, scores)
    scores.set(event.item_id, event)
    // Delivered after publish resolves, like the Redis reader.
    queueMicrotask(() => this.onEvent(stored))
    return id
  }

  async replay(userId: string | null, afterId: string): Promise<Replay> {
    const source = userId === null ? { events: this.all, trimmed: this.allTrimmed } : this.histories.get(userId)
    if (!source) return { events: [] }
    const gap = source.trimmed && compareEventIds(afterId, source.trimmed) < 0 ? source.events[0]?.id : undefined
    return { gap, events: source.events.filter(after(afterId)) }
  }

  async latest(userId: string, items: string[]): Promise<ScoreEvent[]> {
    const scores = this.scores.get(userId)
    return items.flatMap((item) => scores?.get(item) ?? [])
  }

  async start(onEvent: (event: StoredEvent) => void): Promise<void> {
    this.onEvent = onEvent
  }

  async canary(): Promise<string | null> {
    return null
  }

  async close(): Promise<void> {
    this.onEvent = () => {}
  }
}

/*
 * Redis layout. Ids come from XADD on ONE global stream (`keys.events`), so they are totally
 * ordered across replicas and double as Last-Event-ID. Each replica runs one XREAD BLOCK reader
 * on that stream and dispatches locally: the fan-out path, used even with one replica. The
 * per-user history is a sorted set in the user's slot (all scores 0, members `<lex id>|<json>`,
 * so ZRANGEBYLEX returns id order whatever order inserts land in); the latest score per item is
 * a hash in the same slot, whose values carry the lex id so an older write never wins.
 */
const REMEMBER = `
local function remember(hist, trimmed, scores, lex, json, item, max, ttl, scoresTtl)
  local member = lex .. '|' .. json
  redis.call('ZADD', hist, 0, member)
  local extra = redis.call('ZCARD', hist) - max
  if extra > 0 then
    local gone = redis.call('ZRANGE', hist, extra - 1, extra - 1)
    local newest = string.sub(gone[1], 1, 31)
    local known = redis.call('GET', trimmed)
    if not known or known < newest then redis.call('SET', trimmed, newest) end
    redis.call('ZREMRANGEBYRANK', hist, 0, extra - 1)
  end
  redis.call('EXPIRE', hist, ttl)
  redis.call('EXPIRE', trimmed, ttl)
  local current = redis.call('HGET', scores, item)
  if not current or current < member then redis.call('HSET', scores, item, member) end
  redis.call('EXPIRE', scores, scoresTtl)
end
local function pad(n) return string.rep('0', 15 - #n) .. n end
`

/** Cluster: the history keys are in the user's slot, not the stream's, so this runs after XADD. */
const REMEMBER_ONLY = `${REMEMBER}
remember(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6])
`

/**
 * Single Redis: XADD and the history write in one script, so no reader can see an event live
 * before it is in the history (the resume seam relies on that; on a cluster the window is the
 * time between two commands of the same publisher).
 */
const PUBLISH = `${REMEMBER}
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[6], '*', 'e', ARGV[1])
local ms, seq = string.match(id, '(%d+)-(%d+)')
remember(KEYS[2], KEYS[3], KEYS[4], pad(ms) .. '-' .. pad(seq), ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5])
return id
`

declare module 'ioredis' {
  interface RedisCommander<Context extends ClientContext> {
    moltbridgeEventsPublish(
      stream: string,
      history: string,
      trimmed: string,
      scores: string,
      json: string,
      item: string,
      historyMax: number,
      historyTtl: number,
      scoresTtl: number,
      streamMax: number
    ): Result<string, Context>
    moltbridgeEventsRemember(
      history: string,
      trimmed: string,
      scores: string,
      lex: string,
      json: string,
      item: string,
      historyMax: number,
      historyTtl: number,
      scoresTtl: number
    ): Result<null, Context>
  }
}

/** `<lex id>|<json>` back to a stored event. */
function fromMember(member: string): StoredEvent {
  const bar = member.indexOf('|')
  return { id: eventIdFromLex(member.slice(0, bar)), event: JSON.parse(member.slice(bar + 1)) as ScoreEvent }
}

/** From XINFO STREAM (a flat name/value list): entries held, entries ever added, and the oldest id held. */
function trimmedBefore(info: unknown): { length: number; added: number; first: string } | null {
  if (!Array.isArray(info)) return null
  const field = (name: string): unknown => info[info.indexOf(name) + 1]
  const first = field('first-entry')
  const id = Array.isArray(first) ? String(first[0]) : ''
  return isEventId(id) ? { length: Number(field('length')), added: Number(field('entries-added')), first: id } : null
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref())

/** Shared by every replica: history and scores per user, fan-out through one global stream. */
export class RedisEventStore implements EventStore {
  private stopped = false
  private loop: Promise<void> | null = null
  private onEvent: (event: StoredEvent) => void = () => {}
  private canarySeq = 0
  private canaryInFlight: Promise<string | null> | null = null
  private canaryWaiter: { token: string; done: (reason: string | null) => void } | null = null
  private readonly replica = Math.random().toString(36).slice(2)

  constructor(
    private readonly redis: RedisClient,
    /** A dedicated connection: XREAD BLOCK holds it. */
    private readonly reader: RedisClient,
    private readonly keys: Keys,
    private readonly limits: EventLimits,
    private readonly metrics: Metrics
  ) {
    defineScripts(redis, { EventsPublish: { keys: 4, lua: PUBLISH }, EventsRemember: { keys: 3, lua: REMEMBER_ONLY } })
  }

  async publish(event: ScoreEvent): Promise<string> {
    const { historyMax, historyTtlS, scoresTtlS, streamMax } = this.limits
    const k = this.keys
    const user = event.user_id
    const json = JSON.stringify(event)
    const end = this.metrics.redisDuration.startTimer({ op: 'publish' })
    try {
      if (!this.redis.isCluster) {
        return await this.redis.moltbridgeEventsPublish(
          k.events, k.history(user), k.historyTrimmed(user), k.scores(user),
          json, event.item_id, historyMax, historyTtlS, scoresTtlS, streamMax
        )
      }
      const id = await this.redis.xadd(k.events, 'MAXLEN', '~', String(streamMax), '*', 'e', json)
      if (!id) throw new Error('XADD returned no id')
      await this.redis.moltbridgeEventsRemember(
        k.history(user), k.historyTrimmed(user), k.scores(user),
        lexEventId(id), json, event.item_id, historyMax, historyTtlS, scoresTtlS
      )
      return id
    } catch (err) {
      this.metrics.redisErrors.inc({ op: 'publish' })
      throw err
    } finally {
      end()
    }
  }

  async replay(userId: string | null, afterId: string): Promise<Replay> {
    return userId === null ? this.replayAll(afterId) : this.replayUser(userId, afterId)
  }

  private async replayUser(userId: string, afterId: string): Promise<Replay> {
    const history = this.keys.history(userId)
    // '~' sorts after '|', so the bound excludes afterId itself and includes every later id.
    const [members, trimmed, oldest] = await Promise.all([
      this.redis.zrangebylex(history, `(${lexEventId(afterId)}~`, '+'),
      this.redis.get(this.keys.historyTrimmed(userId)),
      this.redis.zrange(history, '0', '0')
    ])
    const gap = trimmed && lexEventId(afterId) < trimmed && oldest[0] ? fromMember(oldest[0]).id : undefined
    return { gap, events: members.map(fromMember) }
  }

  /** `ratings:all`: the global stream is the history (bounded by EVENTS_STREAM_MAX). */
  private async replayAll(afterId: string): Promise<Replay> {
    const [entries, oldest] = await Promise.all([
      this.redis.xrange(this.keys.events, `(${afterId}`, '+'),
      this.redis.call('XINFO', 'STREAM', this.keys.events).then(trimmedBefore, () => null)
    ])
    const events = entries.flatMap(([id, fields]) => (fields[0] === 'e' ? [{ id, event: JSON.parse(fields[1]) as ScoreEvent }] : []))
    // Entries were trimmed off (more added than held) and the oldest one held is after afterId.
    const gap = oldest && oldest.added > oldest.length && compareEventIds(afterId, oldest.first) < 0 ? oldest.first : undefined
    return { gap, events }
  }

  async latest(userId: string, items: string[]): Promise<ScoreEvent[]> {
    if (items.length === 0) return []
    const values = await this.redis.hmget(this.keys.scores(userId), ...items)
    return values.flatMap((value) => (value ? [fromMember(value).event] : []))
  }

  async start(onEvent: (event: StoredEvent) => void): Promise<void> {
    this.onEvent = onEvent
    // The stream's end as of now, on the ready main connection: the reader's own connection may
    // still be connecting, and an event published meanwhile must not be skipped.
    const start = await this.newestId().catch(() => null)
    this.loop = this.read(start)
  }

  private async newestId(): Promise<string> {
    const newest = await this.redis.xrevrange(this.keys.events, '+', '-', 'COUNT', 1)
    return newest[0]?.[0] ?? '0-0'
  }

  /** The fan-out reader: from the stream's end at start, then from the last id seen, forever. */
  private async read(start: string | null): Promise<void> {
    let last = start
    while (!this.stopped) {
      try {
        last ??= await this.newestId()
        const batches: [string, [string, string[]][]][] | null = await this.reader.xread('COUNT', 1000, 'BLOCK', 1000, 'STREAMS', this.keys.events, last)
        for (const [, entries] of batches ?? []) {
          for (const [id, fields] of entries) {
            last = id
            this.dispatch(id, fields)
          }
        }
      } catch {
        // Redis away: the connection retries by itself; resume from `last`, so nothing is skipped.
        if (!this.stopped) await sleep(200)
      }
    }
  }

  private dispatch(id: string, fields: string[]): void {
    if (fields[0] === 'c') {
      if (this.canaryWaiter?.token === fields[1]) this.canaryWaiter.done(null)
      return
    }
    this.onEvent({ id, event: JSON.parse(fields[1]) as ScoreEvent })
  }

  /** At most one canary in flight: concurrent /readyz calls share it. */
  canary(timeoutMs: number): Promise<string | null> {
    if (this.canaryInFlight) return this.canaryInFlight
    const token = `${this.replica}:${++this.canarySeq}`
    this.canaryInFlight = new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => done(`canary not seen through the fan-out within ${timeoutMs} ms`), timeoutMs)
      const done = (reason: string | null) => {
        clearTimeout(timer)
        this.canaryWaiter = null
        this.canaryInFlight = null
        resolve(reason)
      }
      this.canaryWaiter = { token, done }
      this.redis
        .xadd(this.keys.events, 'MAXLEN', '~', String(this.limits.streamMax), '*', 'c', token)
        .catch((err: Error) => done(`canary publish failed: ${err.message}`))
    })
    return this.canaryInFlight
  }

  async close(): Promise<void> {
    this.stopped = true
    this.canaryWaiter?.done('closing')
    // Ends a blocked XREAD now instead of after its BLOCK timeout.
    this.reader.disconnect()
    await this.loop
  }
}
