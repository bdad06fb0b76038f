import { readFileSync } from 'node:fs'
import { Type, type Static } from 'typebox'
import { Compile } from 'typebox/compile'
import { describeSchemaError } from '../shared/schema-error.js'
import { ConfigError } from '../config.js'
import type { Log } from '../logger.js'
import type { BucketLimits } from './token-bucket.js'

/** What a bucket limits: REST writes, reads (scores, tickets), feed forwarding, SSE delivery. */
export const ACTIONS = ['rest', 'read', 'forward', 'delivery'] as const
export type Action = (typeof ACTIONS)[number]

/** One bucket policy, as kept in version control: `capacity` tokens at once, then `refill_rate` per second. */
export const BucketPolicySchema = Type.Object(
  {
    bucket_name: Type.String({ minLength: 1, maxLength: 128 }),
    refill_rate: Type.Number({ exclusiveMinimum: 0 }),
    capacity: Type.Integer({ minimum: 1 }),
    key_selector: Type.String({ pattern: '^(ip|jwt\\.claims\\.[A-Za-z0-9_:.-]+)$' }),
    /** `shadow`: decide, count and send the headers, but admit (try a limit on live traffic first). */
    mode: Type.Optional(Type.Enum(['enforce', 'shadow']))
  },
  { additionalProperties: false }
)
export type BucketPolicy = Static<typeof BucketPolicySchema>

/** A policy's numbers as the token-bucket math takes them. */
export const limitsOf = (policy: BucketPolicy): BucketLimits => ({ capacity: policy.capacity, refillRate: policy.refill_rate })

/** BUCKETS_FILE: a JSON array of policies, each naming the action it applies to. */
const PoliciesFile = Type.Array(
  Type.Object(
    {
      action: Type.Enum([...ACTIONS]),
      bucket_name: BucketPolicySchema.properties.bucket_name,
      refill_rate: BucketPolicySchema.properties.refill_rate,
      capacity: BucketPolicySchema.properties.capacity,
      key_selector: BucketPolicySchema.properties.key_selector,
      mode: BucketPolicySchema.properties.mode
    },
    { additionalProperties: false }
  )
)
const checkFile = Compile(PoliciesFile)

/** The seed policy: every action gets it unless BUCKETS_FILE says otherwise. */
export const DEFAULT_POLICY: BucketPolicy = {
  bucket_name: 'moltbook-agent-bucket',
  refill_rate: 20,
  capacity: 40,
  key_selector: 'jwt.claims.agent_id'
}

export type Policies = Record<Action, BucketPolicy>

/** Validates the parsed content of a BUCKETS_FILE; `source` names it in errors. */
export function parsePolicies(data: unknown, source = 'BUCKETS_FILE'): Policies {
  if (!checkFile.Check(data)) {
    const first = checkFile.Errors(data)[0]
    const detail = first ? describeSchemaError(first, first.instancePath ? 'at ' : '') : 'is invalid'
    throw new ConfigError(`Invalid configuration: ${source} ${detail}`)
  }
  const policies: Policies = { rest: DEFAULT_POLICY, read: DEFAULT_POLICY, forward: DEFAULT_POLICY, delivery: DEFAULT_POLICY }
  const seen = new Set<Action>()
  for (const { action, ...policy } of data) {
    if (seen.has(action)) throw new ConfigError(`Invalid configuration: ${source} lists action "${action}" twice`)
    seen.add(action)
    policies[action] = policy
  }
  return policies
}

/** The policies of BUCKETS_FILE (or the default for every action when unset). */
export function loadPolicies(file: string | undefined): Policies {
  if (!file) return parsePolicies([])
  let data: unknown
  try {
    data = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new ConfigError(`Invalid configuration: BUCKETS_FILE ${file} cannot be read as JSON (${(err as Error).message})`)
  }
  return parsePolicies(data, `BUCKETS_FILE ${file}`)
}

/**
 * SIGHUP: BUCKETS_FILE is read again and `apply`'d when it validates; otherwise the old
 * policies stay and the log says why.
 */
export function reloadPolicies(file: string | undefined, apply: (policies: Policies) => void, log: Log): void {
  if (!file) {
    log.warn('SIGHUP: BUCKETS_FILE is not set, the built-in policies stay')
    return
  }
  let policies: Policies
  try {
    policies = loadPolicies(file)
  } catch (err) {
    log.error({ reason: (err as Error).message }, 'BUCKETS_FILE reload refused: the old policies stay')
    return
  }
  apply(policies)
  log.info({ policies }, 'bucket policies reloaded from BUCKETS_FILE')
}
