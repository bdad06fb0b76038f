import t from 'tap'
import { AgentLanes } from '../../src/forward/agent-lanes.js'

t.test('serves agents round-robin, each in FIFO order', async (t) => {
  const lanes = new AgentLanes<string>()
  for (const item of ['a1', 'a2', 'a3']) lanes.push('a', item)
  lanes.push('b', 'b1')
  const served: string[] = []
  for (let next = lanes.next(0); next && 'item' in next; next = lanes.next(0)) served.push(next.item)
  t.same(served, ['a1', 'b1', 'a2', 'a3'])
  t.equal(lanes.size, 0)
  t.equal(lanes.next(0), null)
})

t.test('a held agent waits while the others are served, then resumes with its head item', async (t) => {
  const lanes = new AgentLanes<string>()
  lanes.push('slow', 's1')
  lanes.push('slow', 's2')
  lanes.push('fast', 'f1')
  const first = lanes.next(0)
  t.same(first, { item: 's1', agent: 'slow' })
  lanes.pushFront('slow', 's1')
  lanes.holdUntil('slow', 100)
  t.same(lanes.next(10), { item: 'f1', agent: 'fast' })
  t.same(lanes.next(10), { wakeAt: 100 }, 'nothing ready: told when to come back')
  t.same(lanes.next(100), { item: 's1', agent: 'slow' })
  t.same(lanes.next(100), { item: 's2', agent: 'slow' })
  t.equal(lanes.size, 0)
})
