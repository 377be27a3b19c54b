import t from 'tap'
import { ReadBuffers } from '../../../agent/tail/read-buffers.ts'

t.test('a buffer is handed out again only after release', async (t) => {
  const pool = new ReadBuffers(16, 4)
  const one = pool.take()
  const two = pool.take()
  t.not(two, one, 'held: not handed out again')
  pool.release()
  const again = new Set([pool.take(), pool.take()])
  t.ok(again.has(one) && again.has(two), 'released: both are reused')
})

t.test('keeps at most `keep` buffers, and forgets reads held too long', async (t) => {
  const pool = new ReadBuffers(16, 2)
  const taken = Array.from({ length: 5 }, () => pool.take())
  pool.release()
  const next = [pool.take(), pool.take(), pool.take()]
  t.equal(next.filter((b) => taken.includes(b)).length, 2, 'two kept, the third is new')
  const unreleased = new ReadBuffers(16, 2)
  const first = unreleased.take()
  for (let i = 0; i < 100; i++) unreleased.take()
  unreleased.release()
  for (let i = 0; i < 2; i++) t.not(unreleased.take(), first, 'the first read was forgotten: never reused')
})
