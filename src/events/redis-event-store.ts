import type { ClientContext, Result } from 'ioredis'
import type { ScoreEvent } from '../rating.js'
import type { RedisClient } from '../redis/client.js'
import type { Keys } from '../redis/keys.js'
import { defineScripts } from '../redis/scripts.js'
import type { RedisSubscriber } from '../redis/subscriber.js'
import { partitionOf } from '../shared/partition.js'
import { newReplicaId } from '../shared/replica-id.js'
import { timedCall, type CallMetrics } from '../shared/timed-call.js'
import { withTimeout } from '../shared/timeout.js'
import { compareEventIds, START_ID } from './event-id.js'
import { nothingHeld, type EventLimits, type EventStore, type LiveSink, type PublishMark, type StoredEvent, type Topic, type TopicRead } from './event-store.js'

/*
 * Redis layout, per user in the user's slot: the history, a Redis Stream whose entry ids are the
 * event ids (`<ms>-<seq>`, ordered per user), and the latest score per item (a hash). One script
 * per event appends to the history, keeps the latest score and SPUBLISHes `<id> <json>` on the
 * user's channel beside it, so only replicas with a stream of that user open hear it. Every event
 * is also appended to one `ratings:all` partition (by user) and published on its channel: with a
 * single Redis in the same script, on a Cluster in a second one (another slot).
 *
 * A user's history is trimmed with XDEL rather than XADD MAXLEN: only XDEL moves the stream's
 * max-deleted-entry-id, which tells a resume exactly whether it missed a trimmed event (a
 * history is rarely full, so this costs an XLEN). The partitions are always full: they are trimmed
 * with MAXLEN ~ (whole blocks, the cheapest), and a resume from before their oldest entry, once
 * entries were trimmed, counts as a gap (README: measured costs).
 */
const APPEND = `
local function append(stream, json, max)
  local id = redis.call('XADD', stream, '*', 'e', json)
  local extra = redis.call('XLEN', stream) - max
  if extra > 0 then
    for _, entry in ipairs(redis.call('XRANGE', stream, '-', '+', 'COUNT', extra)) do
      redis.call('XDEL', stream, entry[1])
    end
  end
  return id
end
local function user(events, scores, json, item, max, ttl, scoresTtl, channel, traced)
  local id = append(events, json, max)
  redis.call('EXPIRE', events, ttl)
  redis.call('HSET', scores, item, json)
  redis.call('EXPIRE', scores, scoresTtl)
  redis.call('SPUBLISH', channel, id .. ' ' .. traced .. json)
  return id
end
local function all(events, json, max, channel, traced)
  local id = redis.call('XADD', events, 'MAXLEN', '~', max, '*', 'e', json)
  redis.call('SPUBLISH', channel, id .. ' ' .. traced .. json)
end
`

/**
 * KEYS events, scores, mark; ARGV json, item, historyMax, historyTtl, scoresTtl, channel, traced
 * (the traceparent and a space, or '': what goes between the id and the json of the live
 * message), mark value, mark TTL (s; 0: no mark, KEYS[3] is then any key of the user's slot).
 */
const PUBLISH_USER = `${APPEND}
local id = user(KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], ARGV[7])
if tonumber(ARGV[9]) > 0 then redis.call('SET', KEYS[3], ARGV[8], 'EX', ARGV[9]) end
return id
`

/** KEYS partition events; ARGV json, partition max, channel, traced. */
const PUBLISH_ALL = `${APPEND}
all(KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4])
return 1
`

/** Single Redis: both in one atomic step (KEYS and ARGV of the user's, then the partition's events, max and channel). */
const PUBLISH_BOTH = `${APPEND}
local id = user(KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], ARGV[7])
if tonumber(ARGV[9]) > 0 then redis.call('SET', KEYS[3], ARGV[8], 'EX', ARGV[9]) end
all(KEYS[4], ARGV[1], tonumber(ARGV[10]), ARGV[11], ARGV[7])
return id
`

/**
 * KEYS history; ARGV the id to read after ('' for none). Returns the newest id, the newest id
 * deleted, the oldest held, whether entries were trimmed off, Redis's time (whole seconds) and
 * the entries after the id: one consistent snapshot.
 */
const READ = `
local info = redis.pcall('XINFO', 'STREAM', KEYS[1])
local now = redis.call('TIME')[1]
if info.err then return {'', '0-0', '', 0, now, {}} end
local field = {}
for i = 1, #info, 2 do field[info[i]] = info[i + 1] end
local oldest = field['first-entry'] and field['first-entry'][1] or ''
local trimmed = field['entries-added'] > field['length'] and 1 or 0
local entries = {}
if ARGV[1] ~= '' then entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+') end
return {field['last-generated-id'], field['max-deleted-entry-id'], oldest, trimmed, now, entries}
`

type RawEntry = [id: string, fields: string[]]
type ReadReply = [last: string, deleted: string, oldest: string, trimmed: 0 | 1, nowS: string, entries: RawEntry[]]

/** ARGV of the user's part of a publish, in script order. */
type UserArgs = [
  json: string,
  item: string,
  historyMax: number,
  historyTtl: number,
  scoresTtl: number,
  channel: string,
  traced: string,
  markValue: string,
  markTtl: number
]

declare module 'ioredis' {
  interface RedisCommander<Context extends ClientContext> {
    moltbridgeEventsUser(events: string, scores: string, mark: string, ...args: UserArgs): Result<string, Context>
    moltbridgeEventsAll(events: string, json: string, max: number, channel: string, traced: string): Result<number, Context>
    moltbridgeEventsBoth(
      events: string,
      scores: string,
      mark: string,
      allEvents: string,
      ...args: [...UserArgs, allMax: number, allChannel: string]
    ): Result<string, Context>
    moltbridgeEventsRead(history: string, afterId: string): Result<ReadReply, Context>
  }
}

/**
 * A publish that Redis does not answer within this fails (the forwarder retries it later, the
 * REST caller has its score anyway) instead of hanging. Generous: a publish that timed out but
 * landed is published again by the retry.
 */
const PUBLISH_TIMEOUT_MS = 5000
/** Reads of a history (stream opens, catch-ups) wait at most this long. */
const READ_TIMEOUT_MS = 5000

const IGNORE: LiveSink = { event() {}, resync() {} }

export interface RedisEventStoreOptions extends EventLimits {
  /** This replica's sharded pub/sub connection (live events, the canary). */
  subscriber: RedisSubscriber
  /** Latency and failures of publish and read (`op="publish"`, `op="read"`). */
  metrics: CallMetrics
  /** Names this replica's canary channel; a new replica id by default. */
  replicaId?: string
}

/** Shared by every replica: histories and scores per user, `ratings:all` partitions, per-user live channels. */
export class RedisEventStore implements EventStore {
  private sink: LiveSink = IGNORE
  private readonly canaryChannel: string
  private canarySeq = 0
  private readonly canaryWaiters = new Map<string, () => void>()
  private canaryListening: Promise<void> | null = null
  private readonly stopResync: () => void
  private readonly allMax: number
  private readonly partitions: Set<Topic>

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly options: RedisEventStoreOptions
  ) {
    defineScripts(redis, {
      EventsUser: { keys: 3, lua: PUBLISH_USER },
      EventsAll: { keys: 1, lua: PUBLISH_ALL },
      EventsBoth: { keys: 4, lua: PUBLISH_BOTH },
      EventsRead: { keys: 1, lua: READ }
    })
    this.canaryChannel = keys.canary(options.replicaId ?? newReplicaId())
    this.allMax = Math.ceil(options.allMax / options.allPartitions)
    this.partitions = new Set(Array.from({ length: options.allPartitions }, (_, partition) => keys.allEvents(partition)))
    this.stopResync = options.subscriber.onReconnect((subscribed) => this.sink.resync(subscribed))
  }

  publish(event: ScoreEvent, trace?: string, mark?: PublishMark): Promise<string> {
    return timedCall(this.options.metrics, 'publish', PUBLISH_TIMEOUT_MS, () => this.write(event, trace ? `${trace} ` : '', mark))
  }

  private async write(event: ScoreEvent, traced: string, mark: PublishMark | undefined): Promise<string> {
    const { historyMax, historyTtlS, scoresTtlS, allPartitions } = this.options
    const { keys } = this
    const events = keys.userEvents(event.user_id)
    const scores = keys.scores(event.user_id)
    const all = keys.allEvents(partitionOf(event.user_id, allPartitions))
    const json = JSON.stringify(event)
    // No mark: the scores key stands in (same slot), with a TTL of 0 that sets nothing.
    const [markKey, markValue, markTtl] = mark ? [mark.key, mark.value, mark.ttlS] : [scores, '', 0]
    const args: UserArgs = [json, event.item_id, historyMax, historyTtlS, scoresTtlS, keys.live(events), traced, markValue, markTtl]
    if (!this.redis.isCluster) {
      return this.redis.moltbridgeEventsBoth(events, scores, markKey, all, ...args, this.allMax, keys.live(all))
    }
    const id = await this.redis.moltbridgeEventsUser(events, scores, markKey, ...args)
    await this.redis.moltbridgeEventsAll(all, json, this.allMax, keys.live(all), traced)
    return id
  }

  async latest(userId: string, items: string[]): Promise<ScoreEvent[]> {
    if (items.length === 0) return []
    const values = await this.redis.hmget(this.keys.scores(userId), ...items)
    return values.flatMap((value) => (value ? [JSON.parse(value) as ScoreEvent] : []))
  }

  userTopic(userId: string): Topic {
    return this.keys.userEvents(userId)
  }

  allTopics(): Topic[] {
    return [...this.partitions]
  }

  read(topic: Topic, afterId: string | null): Promise<TopicRead> {
    return timedCall(this.options.metrics, 'read', READ_TIMEOUT_MS, async () => {
      const [newest, deleted, oldest, trimmed, nowS, entries] = await this.redis.moltbridgeEventsRead(topic, afterId ?? '')
      const last = newest || START_ID
      if (afterId === null) return { last, events: [], future: false }
      if (!newest) return nothingHeld(afterId, (Number(nowS) + 1) * 1000)
      const future = compareEventIds(afterId, newest) > 0
      // A partition (MAXLEN ~) cannot tell its newest trimmed id: anything before its oldest counts as missed.
      const missed = this.partitions.has(topic) ? trimmed === 1 && compareEventIds(afterId, oldest) < 0 : compareEventIds(afterId, deleted) < 0
      const gap = oldest && missed ? oldest : undefined
      const events = future ? [] : entries.flatMap(([id, fields]) => (fields[0] === 'e' ? [{ id, event: JSON.parse(fields[1]) as ScoreEvent }] : []))
      return { last, events, gap, future }
    })
  }

  start(sink: LiveSink): void {
    this.sink = sink
  }

  listen(topic: Topic): Promise<void> {
    return this.options.subscriber.subscribe(this.keys.live(topic), (payload) => this.sink.event(topic, parseLive(payload)))
  }

  unlisten(topic: Topic): Promise<void> {
    return this.options.subscriber.unsubscribe(this.keys.live(topic))
  }

  /** SPUBLISHes a token on this replica's own channel and waits to hear it: no history is written. */
  async canary(timeoutMs: number): Promise<string | null> {
    const token = String(++this.canarySeq)
    const heard = new Promise<void>((resolve) => this.canaryWaiters.set(token, resolve))
    const roundTrip = async () => {
      this.canaryListening ??= this.listenCanary()
      await this.canaryListening
      await this.redis.spublish(this.canaryChannel, token)
      await heard
    }
    try {
      await withTimeout(roundTrip(), timeoutMs)
      return null
    } catch (err) {
      return `canary not heard back: ${err instanceof Error ? err.message : String(err)}`
    } finally {
      this.canaryWaiters.delete(token)
    }
  }

  private listenCanary(): Promise<void> {
    return this.options.subscriber
      .subscribe(this.canaryChannel, (token) => this.canaryWaiters.get(token)?.())
      .catch((err: unknown) => {
        this.canaryListening = null
        throw err
      })
  }

  async close(): Promise<void> {
    this.stopResync()
    this.sink = IGNORE
    await this.options.subscriber.unsubscribe(this.canaryChannel)
  }
}

/** A live message: `<id> <json>`, or `<id> <traceparent> <json>` when the publisher traces. */
function parseLive(payload: string): StoredEvent {
  const space = payload.indexOf(' ')
  const id = payload.slice(0, space)
  if (payload[space + 1] === '{') return { id, event: JSON.parse(payload.slice(space + 1)) as ScoreEvent }
  const json = payload.indexOf(' ', space + 1)
  return { id, event: JSON.parse(payload.slice(json + 1)) as ScoreEvent, trace: payload.slice(space + 1, json) }
}
