import t from 'tap'
import { BatchRing } from '../../../agent/ship/batch-ring.ts'

t.test('batches take the ring in turn, wrap round to space freed, and get buffers of their own when it is full', async (t) => {
  const ring = new BatchRing(100)
  const a = ring.alloc(40)
  const b = ring.alloc(40)
  t.equal(b.buffer, a.buffer, 'one ring')
  t.same([a.byteOffset - a.byteOffset, b.byteOffset - a.byteOffset], [0, 40])
  const c = ring.alloc(30)
  t.not(c.buffer, a.buffer, '20 bytes left at the end, none at the start: a buffer of its own')
  ring.free(a)
  const d = ring.alloc(30)
  t.equal(d.buffer, a.buffer)
  t.equal(d.byteOffset, a.byteOffset, 'wrapped to the space a left')
  t.not(ring.alloc(20).buffer, a.buffer, 'wrapped: only the 10 bytes between d and b are free')
  ring.free(c) // a buffer of its own: nothing to do
  ring.free(b)
  ring.free(d)
  t.equal(ring.alloc(100).byteOffset, a.byteOffset, 'all freed: from the start, the whole ring')
  t.not(ring.alloc(0).buffer, a.buffer)
})

t.test('a batch bigger than the ring gets a buffer of its own; freeing out of order is refused', async (t) => {
  const ring = new BatchRing(64)
  t.equal(ring.alloc(65).length, 65)
  const first = ring.alloc(10)
  const second = ring.alloc(10)
  t.throws(() => ring.free(second), /out of the order/)
  ring.free(first)
  ring.free(second)
})
