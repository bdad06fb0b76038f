import { SignJWT } from 'jose'
import type { Config } from './config.js'

/** The demo's users and items: the Moltbook simulator rates these, the page shows these cards. */
export const DEMO_USERS = ['alice', 'bob', 'carol', 'dave']
export const DEMO_ITEMS = Array.from({ length: 12 }, (_, i) => `item-${i + 1}`)

/** Seconds a demo login lasts; the page logs in again when its stream says `expired`. */
export const LOGIN_TTL_S = 15 * 60

/** A dev JWT for a demo user (sub = agent = user), signed with the gateway's own secret. */
export async function mintDemoToken(config: Config, userId: string, ttlS = LOGIN_TTL_S): Promise<string> {
  if (!config.JWT_SECRET) throw new Error('demo tokens need JWT_SECRET')
  const jwt = new SignJWT({ agent_id: userId })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(userId)
    .setIssuedAt()
    .setExpirationTime(`${ttlS}s`)
  if (config.JWT_ISSUER) jwt.setIssuer(config.JWT_ISSUER)
  if (config.JWT_AUDIENCE) jwt.setAudience(config.JWT_AUDIENCE)
  return jwt.sign(new TextEncoder().encode(config.JWT_SECRET))
}

