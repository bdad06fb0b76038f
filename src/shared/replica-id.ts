import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'

/**
 * A name for one gateway instance, unique across restarts and across several instances in one
 * process (tests): queue consumer, lease owner, canary sender and log field all use it.
 */
export function newReplicaId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`
}
