/**
 * Every Redis key is built here, so the hash-tag rule lives in one place: all keys of one
 * agent share `{a:<agent>}`, all keys of one user share `{u:<user>}`, each partition of the
 * forward queue `{q:<n>}` and of the `ratings:all` history `{all:<n>}`, and the few global keys
 * carry their own tag. No command ever spans two tags (Redis Cluster slots), and a pub/sub
 * channel shares the tag of the keys its messages come from (sharded pub/sub: SPUBLISH from a
 * script reaches only subscribers of a channel in the script's slot).
 */
export type Keys = ReturnType<typeof createKeys>

export function createKeys(prefix: string) {
  const agent = (id: string) => `${prefix}:{a:${id}}`
  const user = (id: string) => `${prefix}:{u:${id}}`
  return {
    prefix,
    bucket: (agentId: string, action: string) => `${agent(agentId)}:bucket:${action}`,
    streams: (agentId: string) => `${agent(agentId)}:streams`,
    /** SCAN pattern of every agent's `streams` key, and the agent a matching key belongs to. */
    streamsPattern: `${prefix}:{a:*}:streams`,
    agentOfStreams: (key: string) => key.slice(`${prefix}:{a:`.length, -'}:streams'.length),
    /** An agent's own bucket policies (admin overrides), read by the bucket script in the same slot. */
    limits: (agentId: string) => `${agent(agentId)}:limits`,
    /** A user's history (a Redis Stream): its entry ids are the ids of the user's events. */
    userEvents: (userId: string) => `${user(userId)}:events`,
    /** One partition of the `ratings:all` history (events partitioned by user). */
    allEvents: (partition: number) => `${prefix}:{all:${partition}}:events`,
    /** The live channel beside a history stream (same slot): `<id> <json>` per event. */
    live: (events: string) => `${events}:live`,
    scores: (userId: string) => `${user(userId)}:scores`,
    dedup: (userId: string, itemId: string, timestamp: number) => `${user(userId)}:dedup:${itemId}:${timestamp}`,
    ticket: (ticket: string) => `${prefix}:{t:${ticket}}:ticket`,
    /** One partition of the forward queue (ratings partitioned by agent). */
    queue: (partition: number) => `${prefix}:{q:${partition}}:stream`,
    /** Rung after entries are added to a queue partition: consumers on a Redis Cluster wait on it. */
    queueBell: (partition: number) => `${prefix}:{q:${partition}}:bell`,
    /** A replica's readiness canary: published and heard by that replica only. */
    canary: (replicaId: string) => `${prefix}:{r:${replicaId}}:canary`,
    lease: `${prefix}:{lease}:ingest`,
    fence: `${prefix}:{lease}:fence`,
    ipLimit: `${prefix}:ip:`,
    /** Admin state every replica reloads: revocations, the index of overrides, dead letters; the broadcast channel. */
    revocations: `${prefix}:{admin}:revocations`,
    overrides: `${prefix}:{admin}:overrides`,
    deadLetters: `${prefix}:{deadletters}:stream`,
    broadcast: `${prefix}:{admin}:broadcast`
  }
}
