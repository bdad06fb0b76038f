import t from 'tap'
import { CachedCheck } from '../../src/shared/cached-check.js'
import { FakeClock } from '../helpers/fake-clock.js'

t.test('a cached check runs once for concurrent callers, reuses its result for reuseMs, then runs again', async (t) => {
  const clock = new FakeClock()
  let runs = 0
  let answer: (result: string) => void = () => {}
  const check = new CachedCheck(() => new Promise<string>((resolve) => ((answer = resolve), runs++)), 1000, clock)
  const concurrent = [check.run(), check.run(), check.run()]
  answer(`run ${runs}`)
  t.same(await Promise.all(concurrent), ['run 1', 'run 1', 'run 1'], 'one run shared by three callers')
  clock.advance(999)
  t.equal(await check.run(), 'run 1', 'reused within reuseMs')
  clock.advance(1)
  const next = check.run()
  answer(`run ${runs}`)
  t.equal(await next, 'run 2', 'run again after it')
  t.equal(runs, 2)
})
