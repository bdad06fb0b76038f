import t from 'tap'
import { MemoryTicketStore } from '../../src/auth/ticket-store.js'

const principal = { sub: 'u', agentId: 'a', scopes: [], claims: { sub: 'u', agent_id: 'a' } }

t.test('memory tickets are single use and bounded (oldest dropped first)', async (t) => {
  const store = new MemoryTicketStore({ maxEntries: 2 })
  t.teardown(() => store.close())
  const first = await store.issue(principal, 30)
  const second = await store.issue(principal, 30)
  t.match(second, /^[A-Za-z0-9_-]{43}$/)
  t.not(first, second)
  const third = await store.issue(principal, 30)
  t.equal(await store.peek(first), null, 'the oldest made room')
  t.same(await store.peek(second), principal)
  t.equal(await store.consume(second), true)
  t.equal(await store.consume(second), false, 'second use fails')
  t.equal(await store.peek(second), null)
  t.same(await store.peek(third), principal)
  t.equal(await store.peek('nope'), null)
})
