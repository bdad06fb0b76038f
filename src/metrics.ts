import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/**
 * Every metric family of the gateway, on a registry per app (tests run several apps in one
 * process). Labels carry only bounded, non-secret values: never a user, agent, token or key.
 */
export function createMetrics() {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'moltbridge_' })
  const registers = [registry]
  const latencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
  // Feed latencies: fine around the 50 ms a score has to reach a screen in, so a p99 reads true.
  const feedBuckets = [0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 5, 30]
  return {
    registry,
    httpRequests: new Counter({
      name: 'moltbridge_http_requests_total',
      help: 'HTTP answers by route template and status code',
      labelNames: ['route', 'status'],
      registers
    }),
    bucketDecisions: new Counter({
      name: 'moltbridge_bucket_decisions_total',
      help: 'Token-bucket decisions by action and result (allowed, limited, shadow_limited, fail_open, fail_local, fail_closed)',
      labelNames: ['action', 'result'],
      registers
    }),
    bucketRemaining: new Histogram({
      name: 'moltbridge_bucket_tokens_remaining',
      help: 'Tokens left in the bucket at each decision (fill level)',
      labelNames: ['action'],
      buckets: [0, 1, 2, 5, 10, 20, 40, 80, 160, 320],
      registers
    }),
    redisDuration: new Histogram({
      name: 'moltbridge_redis_command_duration_seconds',
      help: 'Latency of Redis operations by operation name',
      labelNames: ['op'],
      buckets: latencyBuckets,
      registers
    }),
    redisErrors: new Counter({
      name: 'moltbridge_redis_errors_total',
      help: 'Failed or timed-out Redis operations by operation name',
      labelNames: ['op'],
      registers
    }),
    moltbookConnected: new Gauge({
      name: 'moltbridge_moltbook_connected',
      help: '1 while this replica holds an open Moltbook socket',
      registers
    }),
    moltbookConnects: new Counter({
      name: 'moltbridge_moltbook_connects_total',
      help: 'Successful Moltbook connections',
      registers
    }),
    moltbookReconnects: new Counter({
      name: 'moltbridge_moltbook_reconnects_total',
      help: 'Moltbook reconnect attempts after a lost or failed connection',
      registers
    }),
    moltbookMessages: new Counter({
      name: 'moltbridge_moltbook_messages_total',
      help: 'Ratings read from Moltbook by result (valid, invalid) and reason',
      labelNames: ['result', 'reason'],
      registers
    }),
    moltbookPaused: new Gauge({
      name: 'moltbridge_moltbook_paused',
      help: '1 while the feed socket is paused by back-pressure',
      registers
    }),
    queueDepth: new Gauge({
      name: 'moltbridge_forward_queue_depth',
      help: 'Ratings waiting to be forwarded to OpenClaw',
      registers
    }),
    forwardAttempts: new Counter({
      name: 'moltbridge_forward_attempts_total',
      help: 'Calls to OpenClaw by source (feed, rest) and outcome (2xx, 429, 5xx, timeout, network, invalid)',
      labelNames: ['source', 'outcome'],
      registers
    }),
    forwardDuration: new Histogram({
      name: 'moltbridge_forward_duration_seconds',
      help: 'Latency of calls to OpenClaw',
      labelNames: ['source'],
      buckets: latencyBuckets,
      registers
    }),
    dedupHits: new Counter({
      name: 'moltbridge_forward_dedup_hits_total',
      help: 'Ratings skipped because the same (user, item, timestamp) was already forwarded',
      registers
    }),
    forwardDelayed: new Counter({
      name: 'moltbridge_forward_delayed_total',
      help: 'Ratings held back by reason (bucket, upstream_429, backoff)',
      labelNames: ['reason'],
      registers
    }),
    forwardDeadLettered: new Counter({
      name: 'moltbridge_forward_dead_lettered_total',
      help: 'Ratings OpenClaw refused for good, set aside as dead letters, by reason (rejected, invalid_response)',
      labelNames: ['reason'],
      registers
    }),
    sseOpen: new Gauge({
      name: 'moltbridge_sse_streams_open',
      help: 'Open SSE streams on this replica',
      registers
    }),
    sseEventsSent: new Counter({
      name: 'moltbridge_sse_events_sent_total',
      help: 'Score events written to SSE streams (replays included)',
      registers
    }),
    sseConflated: new Counter({
      name: 'moltbridge_sse_events_conflated_total',
      help: 'Score events replaced by a newer score for the same item before they were sent',
      registers
    }),
    sseClosed: new Counter({
      name: 'moltbridge_sse_streams_closed_total',
      help: 'SSE streams closed by reason (client, slow_consumer, overflow, expired, drain, revoked, lost)',
      labelNames: ['reason'],
      registers
    }),
    sseRefused: new Counter({
      name: 'moltbridge_sse_streams_refused_total',
      help: 'SSE streams refused by reason (cap, draining)',
      labelNames: ['reason'],
      registers
    }),
    published: new Counter({
      name: 'moltbridge_events_published_total',
      help: 'Score events published to the fan-out by source (feed, rest)',
      labelNames: ['source'],
      registers
    }),
    fanoutTopics: new Gauge({
      name: 'moltbridge_fanout_topics',
      help: 'Live topics this replica listens to (users with a stream open here, ratings:all partitions)',
      registers
    }),
    fanoutRecovered: new Counter({
      name: 'moltbridge_fanout_recovered_total',
      help: 'Events read back from a history after the live channel was interrupted (a Redis reconnect)',
      registers
    }),
    feedStage: new Histogram({
      name: 'moltbridge_feed_stage_seconds',
      help: 'From reading a rating off Moltbook to each checkpoint before its publish: queued (durably), picked (read by a forwarder), answered (by OpenClaw)',
      labelNames: ['stage'],
      buckets: feedBuckets,
      registers
    }),
    feedToPublish: new Histogram({
      name: 'moltbridge_feed_to_publish_seconds',
      help: 'From reading a rating off Moltbook to publishing its score event',
      buckets: feedBuckets,
      registers
    }),
    fanoutLag: new Histogram({
      name: 'moltbridge_fanout_lag_seconds',
      help: "From an event's publish (its id, on the store's clock) to its arrival on this replica, for topics with a stream here",
      buckets: feedBuckets,
      registers
    }),
    ingestLeader: new Gauge({
      name: 'moltbridge_ingest_leader',
      help: '1 while this replica holds the ingest lease',
      registers
    }),
    loadShed: new Counter({
      name: 'moltbridge_load_shed_total',
      help: 'Requests answered 503 because the process was over a load-shedding threshold, by threshold (eventLoopDelay, heapUsedBytes)',
      labelNames: ['reason'],
      registers
    }),
    bounds: new Gauge({
      name: 'moltbridge_bound',
      help: 'Configured bounds (queue_max, history_max, streams_per_agent, unsent_bytes, body_limit, dead_letters_max, max_event_loop_delay_ms, max_heap_used_bytes; 0: off)',
      labelNames: ['bound'],
      registers
    })
  }
}

export type Metrics = ReturnType<typeof createMetrics>
