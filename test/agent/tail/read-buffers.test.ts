import t from 'tap'
import { ReadBuffers } from '../../../agent/tail/read-buffers.ts'

t.test('a buffer is reused only after the reads before it are released', async (t) => {
  const pool = new ReadBuffers(16, 4)
  const one = pool.take()
  const two = pool.take()
  t.same([one.read, two.read, pool.reads], [1, 2, 2])
  t.not(pool.take().buffer, one.buffer, 'held: not handed out again')
  pool.release(2)
  t.equal(pool.take().buffer, one.buffer, 'read 1 released: its buffer comes back')
  t.not(pool.take().buffer, two.buffer, 'read 2 is still held')
  pool.release(Infinity)
  const again = new Set([pool.take().buffer, pool.take().buffer, pool.take().buffer, pool.take().buffer])
  t.ok(again.has(two.buffer), 'everything released: read 2\'s buffer is reused too')
})

t.test('keeps at most `keep` buffers, and forgets reads held too long', async (t) => {
  const pool = new ReadBuffers(16, 2)
  const taken = Array.from({ length: 5 }, () => pool.take().buffer)
  pool.release(Infinity)
  const next = [pool.take().buffer, pool.take().buffer, pool.take().buffer]
  t.equal(next.filter((b) => taken.includes(b)).length, 2, 'two kept, the third is new')
  const unreleased = new ReadBuffers(16, 2)
  const first = unreleased.take().buffer
  for (let i = 0; i < 100; i++) unreleased.take()
  unreleased.release(Infinity)
  for (let i = 0; i < 2; i++) t.not(unreleased.take().buffer, first, 'the first read was forgotten: never reused')
})
