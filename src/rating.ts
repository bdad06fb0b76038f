import { Type, type Static } from 'typebox'
import { Compile } from 'typebox/compile'

/** Longest user, item or agent id: the same bound for ratings, JWT claims and query lists (ids end up in Redis keys). */
export const ID_MAX_LENGTH = 128

/** A user, item or agent id. */
export const Id = Type.String({ minLength: 1, maxLength: ID_MAX_LENGTH })

/** Latest `timestamp` of the contract: 2100-01-01, Unix seconds. */
const TIMESTAMP_MAX = 4102444800

const ratingFields = {
  user_id: Id,
  item_id: Id,
  timestamp: Type.Integer({ minimum: 0, maximum: TIMESTAMP_MAX, description: 'Unix seconds, up to the year 2100' }),
  // The bounds also refuse what JSON.parse makes of 1e400 (Infinity).
  rating: Type.Number({ minimum: 0, maximum: 5 })
}

/** A rating, version 1 of the contract: closed, a new field means /v2. */
export const RatingSchema = Type.Object(ratingFields, { additionalProperties: false })
export type Rating = Static<typeof RatingSchema>

/** A rating as Moltbook sends it: the same fields plus the agent it is charged to. */
export const FeedRatingSchema = Type.Object(
  { ...ratingFields, agent_id: Type.Optional(Id) },
  { additionalProperties: false }
)
export type FeedRating = Static<typeof FeedRatingSchema>

/** What OpenClaw answers for a rating and what browsers receive; `rating` is the personalized score. */
export const ScoreEventSchema = Type.Object({
  user_id: Id,
  item_id: Id,
  rating: Type.Number(),
  timestamp: Type.Integer()
})
export type ScoreEvent = Static<typeof ScoreEventSchema>

export const feedRatingValidator = Compile(FeedRatingSchema)
export const scoreEventValidator = Compile(ScoreEventSchema)

/** The agent a feed rating is charged to: its agent_id, else its user. */
export function agentOf(rating: FeedRating): string {
  return rating.agent_id ?? rating.user_id
}

/** The key that makes a rating delivered twice (a feed replay, a retry) forwarded once. */
export function dedupKey(rating: Rating): string {
  return `${rating.user_id}\u0000${rating.item_id}\u0000${rating.timestamp}`
}

/** Only the four contract fields, in contract order, whatever else came along. */
export function toScoreEvent(value: ScoreEvent): ScoreEvent {
  return { user_id: value.user_id, item_id: value.item_id, rating: value.rating, timestamp: value.timestamp }
}

/** The exact JSON OpenClaw receives: the v1 rating without agent_id. */
export function toRating(value: FeedRating): Rating {
  return { user_id: value.user_id, item_id: value.item_id, timestamp: value.timestamp, rating: value.rating }
}
