import type { ClientContext, Result } from 'ioredis'
import { EventEmitter } from 'node:events'
import type { ScoreEvent } from '../rating.js'
import type { RedisClient } from '../redis/client.js'
import type { Keys } from '../redis/keys.js'
import { defineScripts } from '../redis/scripts.js'
import { newReplicaId } from '../shared/replica-id.js'
import { timedCall, type CallMetrics } from '../shared/timed-call.js'
import { onceWithin, Wakeable } from '../shared/wait.js'
import { compareEventIds, eventIdFromLex, isEventId, lexEventId } from './event-id.js'
import type { EventLimits, EventStore, Replay, StoredEvent } from './event-store.js'

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

/**
 * A publish that Redis does not answer within this fails (the forwarder retries it later, the
 * REST caller has its score anyway) instead of hanging. Generous: a publish that timed out but
 * landed is published again by the retry.
 */
const PUBLISH_TIMEOUT_MS = 5000
/** After a failed read, the fan-out reader waits this long before it reads again. */
const READ_RETRY_MS = 200

export interface RedisEventStoreOptions extends EventLimits {
  /** A dedicated connection for the fan-out reader (XREAD BLOCK holds it); disconnected by close(). */
  reader: RedisClient
  /** Latency and failures of publish (`op="publish"`). */
  metrics: CallMetrics
  /** Names this replica's readiness canaries; a new replica id by default. */
  replicaId?: string
}

/** `<lex id>|<json>` back to a stored event. */
function fromMember(member: string): StoredEvent {
  const bar = member.indexOf('|')
  return { id: eventIdFromLex(member.slice(0, bar)), event: JSON.parse(member.slice(bar + 1)) as ScoreEvent }
}

/** From XINFO STREAM (a flat name/value list): entries held, entries ever added, and the oldest id held. */
function streamInfo(info: unknown): { held: number; added: number; oldest: string } | null {
  if (!Array.isArray(info)) return null
  const field = (name: string): unknown => info[info.indexOf(name) + 1]
  const first = field('first-entry')
  const oldest = Array.isArray(first) ? String(first[0]) : ''
  return isEventId(oldest) ? { held: Number(field('length')), added: Number(field('entries-added')), oldest } : null
}

/** Shared by every replica: history and scores per user, fan-out through one global stream. */
export class RedisEventStore implements EventStore {
  private stopped = false
  private loop: Promise<void> | null = null
  private onEvent: (event: StoredEvent) => void = () => {}
  private readonly readRetry = new Wakeable()
  /** Emits each canary token the reader sees. */
  private readonly canariesSeen = new EventEmitter()
  private canarySeq = 0
  private canaryInFlight: Promise<string | null> | null = null
  private readonly replicaId: string

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly options: RedisEventStoreOptions
  ) {
    this.replicaId = options.replicaId ?? newReplicaId()
    defineScripts(redis, { EventsPublish: { keys: 4, lua: PUBLISH }, EventsRemember: { keys: 3, lua: REMEMBER_ONLY } })
  }

  publish(event: ScoreEvent): Promise<string> {
    return timedCall(this.options.metrics, 'publish', PUBLISH_TIMEOUT_MS, () => this.write(event))
  }

  private async write(event: ScoreEvent): Promise<string> {
    const { historyMax, historyTtlS, scoresTtlS, streamMax } = this.options
    const { keys } = this
    const user = event.user_id
    const json = JSON.stringify(event)
    if (!this.redis.isCluster) {
      return this.redis.moltbridgeEventsPublish(
        keys.events, keys.history(user), keys.historyTrimmed(user), keys.scores(user),
        json, event.item_id, historyMax, historyTtlS, scoresTtlS, streamMax
      )
    }
    const id = await this.redis.xadd(keys.events, 'MAXLEN', '~', String(streamMax), '*', 'e', json)
    if (!id) throw new Error('XADD returned no id')
    await this.redis.moltbridgeEventsRemember(
      keys.history(user), keys.historyTrimmed(user), keys.scores(user),
      lexEventId(id), json, event.item_id, historyMax, historyTtlS, scoresTtlS
    )
    return id
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
    const [entries, info] = await Promise.all([
      this.redis.xrange(this.keys.events, `(${afterId}`, '+'),
      this.redis.call('XINFO', 'STREAM', this.keys.events).then(streamInfo, () => null)
    ])
    const events = entries.flatMap(([id, fields]) => (fields[0] === 'e' ? [{ id, event: JSON.parse(fields[1]) as ScoreEvent }] : []))
    // Entries were trimmed off (more added than held) and the oldest one held is after afterId.
    const gap = info && info.added > info.held && compareEventIds(afterId, info.oldest) < 0 ? info.oldest : undefined
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

  /** The fan-out reader: from the stream's end at start, then from the last id seen, until close. */
  private async read(start: string | null): Promise<void> {
    let last = start
    while (!this.stopped) {
      try {
        last ??= await this.newestId()
        const batches: [string, [string, string[]][]][] | null = await this.options.reader.xread(
          'COUNT', 1000, 'BLOCK', 1000, 'STREAMS', this.keys.events, last
        )
        for (const [, entries] of batches ?? []) {
          for (const [id, fields] of entries) {
            last = id
            this.dispatch(id, fields)
          }
        }
      } catch {
        // Redis away: the connection retries by itself; resume from `last`, so nothing is skipped.
        if (!this.stopped) await this.readRetry.sleep(READ_RETRY_MS)
      }
    }
  }

  /** An entry is a score event (`e`, its JSON) or a readiness canary (`c`, its token). */
  private dispatch(id: string, fields: string[]): void {
    if (fields[0] === 'c') this.canariesSeen.emit(fields[1])
    else this.onEvent({ id, event: JSON.parse(fields[1]) as ScoreEvent })
  }

  /** At most one canary in flight: concurrent /readyz calls share it. */
  canary(timeoutMs: number): Promise<string | null> {
    this.canaryInFlight ??= this.sendCanary(timeoutMs).finally(() => (this.canaryInFlight = null))
    return this.canaryInFlight
  }

  private async sendCanary(timeoutMs: number): Promise<string | null> {
    const token = `${this.replicaId}:${++this.canarySeq}`
    const seen = onceWithin(this.canariesSeen, token, timeoutMs)
    try {
      await this.redis.xadd(this.keys.events, 'MAXLEN', '~', String(this.options.streamMax), '*', 'c', token)
    } catch (err) {
      return `canary publish failed: ${err instanceof Error ? err.message : String(err)}`
    }
    return (await seen) ? null : `canary not seen through the fan-out within ${timeoutMs} ms`
  }

  async close(): Promise<void> {
    this.stopped = true
    this.readRetry.wake()
    // Ends a blocked XREAD now instead of after its BLOCK timeout.
    this.options.reader.disconnect()
    await this.loop
  }
}
