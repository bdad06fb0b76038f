import fc from 'fast-check'
import t from 'tap'
import { ConflatingBuffer } from '../../src/sse/conflation.js'

/** A score event as the buffer sees it: its item (the conflation key), its order of arrival (its id), its size. */
interface Event {
  item: string
  seq: number
  bytes: number
}

type Op = { push: { item: string; bytes: number } } | { shift: true }

const items = fc.constantFrom('a', 'b', 'c', 'd', 'e')
const push = fc.record({ push: fc.record({ item: items, bytes: fc.integer({ min: 1, max: 500 }) }) })
const ops = fc.array(fc.oneof({ arbitrary: push, weight: 3 }, { arbitrary: fc.constant({ shift: true as const }), weight: 1 }), {
  maxLength: 200
})

const buffer = () => new ConflatingBuffer<Event>((event) => event.item, (event) => event.bytes)

t.test('conflation keeps exactly the newest event per item, in the order their newest versions arrived', async (t) => {
  let runs = 0
  fc.assert(
    fc.property(fc.array(fc.record({ item: items, bytes: fc.integer({ min: 1, max: 500 }) }), { maxLength: 200 }), (pushes) => {
      runs++
      const conflating = buffer()
      const newest = new Map<string, Event>()
      pushes.forEach(({ item, bytes }, seq) => {
        const event = { item, seq, bytes }
        conflating.push(event)
        newest.delete(item)
        newest.set(item, event)
      })
      const drained: Event[] = []
      for (let event = conflating.shift(); event; event = conflating.shift()) drained.push(event)
      const expected = [...newest.values()]
      if (JSON.stringify(drained) !== JSON.stringify(expected)) throw new Error(`drained ${JSON.stringify(drained)}`)
      if (!drained.every((event, index) => index === 0 || drained[index - 1].seq < event.seq)) throw new Error('ids out of order')
      if (conflating.size !== 0 || conflating.length !== 0) throw new Error('not empty after draining')
    }),
    { numRuns: 500 }
  )
  t.comment(`${runs} random push sequences`)
  t.pass('the newest per item, once each, in arrival order of the newest')
})

t.test('interleaved with sends, the buffer behaves like its model (length, bytes, oldest, what leaves)', async (t) => {
  let runs = 0
  fc.assert(
    fc.property(ops, (sequence: Op[]) => {
      runs++
      const conflating = buffer()
      let model: Event[] = []
      let seq = 0
      for (const op of sequence) {
        if ('push' in op) {
          const event = { ...op.push, seq: seq++ }
          const replaced = conflating.push(event)
          if (replaced !== model.some((held) => held.item === event.item)) throw new Error('push reported the wrong replacement')
          model = [...model.filter((held) => held.item !== event.item), event]
        } else {
          const sent = conflating.shift()
          if (sent !== model.shift()) throw new Error('shift sent another event than the oldest newest')
        }
        const bytes = model.reduce((sum, held) => sum + held.bytes, 0)
        if (conflating.length !== model.length || conflating.size !== bytes) throw new Error(`held ${conflating.length}/${conflating.size}, model ${model.length}/${bytes}`)
        if (conflating.first() !== model[0]) throw new Error('first() is not the oldest')
      }
    }),
    { numRuns: 500 }
  )
  t.comment(`${runs} random push/send sequences`)
  t.pass('matches the model')
})
