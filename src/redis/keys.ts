/**
 * Every Redis key is built here, so the hash-tag rule lives in one place: all keys of one
 * agent share `{a:<agent>}`, all keys of one user share `{u:<user>}`, and the few global
 * keys each carry their own tag. No command ever spans two tags (Redis Cluster slots).
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
    history: (userId: string) => `${user(userId)}:history`,
    /** The newest id trimmed out of a user's history: a resume from before it has a gap. */
    historyTrimmed: (userId: string) => `${user(userId)}:history:trimmed`,
    scores: (userId: string) => `${user(userId)}:scores`,
    dedup: (userId: string, itemId: string, timestamp: number) => `${user(userId)}:dedup:${itemId}:${timestamp}`,
    ticket: (ticket: string) => `${prefix}:{t:${ticket}}:ticket`,
    queue: `${prefix}:{queue}:stream`,
    events: `${prefix}:{events}:stream`,
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
