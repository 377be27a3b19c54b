import t from 'tap'
import { TokenBucket } from '../../shared/token-bucket.ts'

t.test('a burst goes at once, then one per 1/perSecond seconds', async (t) => {
  const b = new TokenBucket({ perSecond: 0.1, burst: 3 }, 0)
  t.same([b.take(0), b.take(0), b.take(0), b.take(0)], [true, true, true, false], 'three at once, not four')
  t.equal(b.waitMs(0), 10_000, 'the next in 10 s')
  t.notOk(b.take(9_999), 'not before')
  t.ok(b.take(10_000), 'then one')
  t.notOk(b.take(10_000), 'and only one')
})

t.test('a quiet time refills up to the burst, never more', async (t) => {
  const b = new TokenBucket({ perSecond: 1, burst: 2 }, 0)
  b.take(0)
  b.take(0)
  const taken = [1, 2, 3].map(() => b.take(3_600_000))
  t.same(taken, [true, true, false], 'an hour idle allows the burst again, not 3,600')
})

t.test('a clock stepping back adds nothing', async (t) => {
  const b = new TokenBucket({ perSecond: 1, burst: 1 }, 10_000)
  t.ok(b.take(10_000))
  t.notOk(b.take(5_000), 'no token from going back in time')
  t.notOk(b.take(10_500), 'nor from coming forward to where it was')
  t.ok(b.take(11_000))
})
