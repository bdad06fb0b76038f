import { pino } from 'pino'
import t from 'tap'
import { MemoryBroadcast } from '../../src/admin/broadcast.js'
import { RELOAD_MS } from '../../src/admin/replicated-map.js'
import { MemoryRevocationStore, Revocations, type RevocationStore } from '../../src/admin/revocations.js'
import { FakeClock, settle } from '../helpers/fake-clock.js'

const TTL_S = 3600
const log = pino({ level: 'silent' })

/** A replica's view of the revocations, on a store and a broadcast that others may share. */
async function replica(t: { teardown(fn: () => unknown): void }, clock: FakeClock, store: RevocationStore, broadcast = new MemoryBroadcast()) {
  const revocations = new Revocations({ store, broadcast, log, clock }, { ttlS: TTL_S })
  await revocations.start()
  t.teardown(() => revocations.close())
  return revocations
}

const principal = (sub: string, agentId: string, iat?: number) => ({ sub, agentId, iat })

t.test("a token issued before its user's or agent's revocation is refused; one issued after is not", async (t) => {
  const clock = new FakeClock()
  const revocations = await replica(t, clock, new MemoryRevocationStore())
  const nowS = () => Math.floor(clock.wallMs() / 1000)
  const before = nowS() - 10
  t.notOk(revocations.isRevoked(principal('u', 'a', before)), 'nothing revoked yet')

  clock.jump(500)
  await revocations.revoke('user', 'u')
  t.ok(revocations.isRevoked(principal('u', 'a', before)), 'issued before')
  t.ok(revocations.isRevoked(principal('u', 'a', nowS())), 'issued in the same second: it may predate the revocation')
  t.ok(revocations.isRevoked(principal('u', 'a')), 'no iat: cannot tell, refused')
  t.notOk(revocations.isRevoked(principal('u', 'a', nowS() + 1)), 'issued in a later second')
  t.notOk(revocations.isRevoked(principal('v', 'a', before)), 'another user')

  await revocations.revoke('agent', 'a')
  t.ok(revocations.isRevoked(principal('v', 'a', before)), 'every user of a revoked agent')
  t.notOk(revocations.isRevoked(principal('v', 'b', before)))
})

t.test('replicas learn a revocation by broadcast at once, or by their periodic reload', async (t) => {
  const clock = new FakeClock()
  const store = new MemoryRevocationStore()
  const broadcast = new MemoryBroadcast()
  const here = await replica(t, clock, store, broadcast)
  const peer = await replica(t, clock, store, broadcast)
  const deaf = await replica(t, clock, store) // missed every broadcast
  const heard: string[] = []
  peer.onRevoke(() => heard.push('peer'))
  deaf.onRevoke(() => heard.push('deaf'))
  const old = principal('u', 'a', Math.floor(clock.wallMs() / 1000) - 10)

  await here.revoke('user', 'u')
  t.ok(peer.isRevoked(old), 'the peer knows at once')
  t.same(heard, ['peer'])
  t.notOk(deaf.isRevoked(old), 'not yet')
  await clock.pass(RELOAD_MS)
  await settle()
  t.ok(deaf.isRevoked(old), 'after its reload')
  t.same(heard, ['peer', 'deaf'], 'each hears it once')

  await clock.pass(TTL_S * 1000)
  await settle()
  t.notOk(deaf.isRevoked(old), 'forgotten once its time is over (no token issued before it is valid any more)')
})

t.test('a store that fails keeps what is known and catches up when it answers again', async (t) => {
  const clock = new FakeClock()
  const inner: RevocationStore = new MemoryRevocationStore()
  let down = false
  const store: RevocationStore = {
    add: (...args) => inner.add(...args),
    list: (...args) => (down ? Promise.reject(new Error('store down')) : inner.list(...args)),
    close: () => inner.close()
  }
  const revocations = await replica(t, clock, store)
  const old = principal('u', 'a', Math.floor(clock.wallMs() / 1000) - 10)
  await revocations.revoke('user', 'u')
  down = true
  await clock.pass(RELOAD_MS)
  t.ok(revocations.isRevoked(old), 'a failed reload forgets nothing')
  await inner.add('user', 'w', clock.wallMs(), TTL_S)
  down = false
  await clock.pass(RELOAD_MS)
  await settle()
  t.ok(revocations.isRevoked(principal('w', 'a', 0)), 'caught up')
})
