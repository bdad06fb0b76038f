import { describeSchemaError } from '../shared/schema-error.js'
import { feedRatingValidator, type FeedRating } from '../rating.js'

/** Why a feed message (or one rating in it) was skipped: a bounded set, used as a metric label. */
export type InvalidReason = 'binary' | 'too_large' | 'empty' | 'json' | 'schema'

export interface Invalid {
  reason: InvalidReason
  /** What was wrong, for the log: a schema path and message, never the message body. */
  detail: string
}

export interface ParsedMessage {
  ratings: FeedRating[]
  /** The first invalid ratings (at most DESCRIBED_MAX), or the whole message, each described. */
  invalid: Invalid[]
  /** Invalid ratings beyond the described ones (all `schema`): counted, not described. */
  moreInvalid: number
}

/**
 * Describing a schema failure costs far more than checking: one message of 262k invalid items
 * took 790 ms of descriptions. The first few say what is wrong; the rest are only counted.
 */
const DESCRIBED_MAX = 3

function schemaDetail(value: unknown): string {
  const first = feedRatingValidator.Errors(value).find((error) => error.keyword !== 'boolean')
  return first ? describeSchemaError(first, 'rating') : 'not a rating'
}

/**
 * One Moltbook message: a rating object or a JSON array of them. Each rating is
 * checked on its own, so valid ratings survive invalid neighbours. A message over `maxBytes`
 * is rejected before parsing; a binary frame is never a rating.
 */
export function parseFeedMessage(data: Buffer, isBinary: boolean, maxBytes: number): ParsedMessage {
  const reject = (reason: InvalidReason, detail: string): ParsedMessage => ({ ratings: [], invalid: [{ reason, detail }], moreInvalid: 0 })
  if (isBinary) return reject('binary', `binary frame of ${data.byteLength} bytes`)
  if (data.byteLength > maxBytes) return reject('too_large', `${data.byteLength} bytes > ${maxBytes}`)
  const text = data.toString('utf8')
  if (text.trim() === '') return reject('empty', 'empty message')
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return reject('json', 'not JSON')
  }
  const values = Array.isArray(value) ? value : [value]
  if (values.length === 0) return reject('empty', 'empty array')
  const parsed: ParsedMessage = { ratings: [], invalid: [], moreInvalid: 0 }
  for (const candidate of values) {
    if (feedRatingValidator.Check(candidate)) parsed.ratings.push(candidate)
    else if (parsed.invalid.length < DESCRIBED_MAX) parsed.invalid.push({ reason: 'schema', detail: schemaDetail(candidate) })
    else parsed.moreInvalid++
  }
  return parsed
}
