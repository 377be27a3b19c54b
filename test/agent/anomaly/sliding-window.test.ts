import t from 'tap'
import { SlidingWindowCount } from '../../../agent/anomaly/sliding-window.ts'

t.test('counts the events of the last window, on event time', async (t) => {
  const w = new SlidingWindowCount(60_000)
  const base = Date.parse('2026-11-25T10:00:00Z')
  for (let i = 0; i < 10; i++) t.equal(w.add(base + i * 1000), i + 1)
  t.equal(w.add(base + 62_000), 6, 'the first five seconds slid out (windows move by twelfths)')
  t.equal(w.add(base + 200_000), 1, 'a long pause empties the window')
})

t.test('a late event within the window lands in its own bucket; an older one is refused', async (t) => {
  const w = new SlidingWindowCount(60_000)
  const base = Date.parse('2026-11-25T10:00:00Z')
  w.add(base + 59_000)
  t.equal(w.add(base + 10_000), 2, 'late but inside the window')
  t.equal(w.add(base + 59_000 - 61_000), -1, 'older than the window')
  // The late event leaves with its own bucket, not with the newest.
  t.equal(w.add(base + 75_000), 2)
})
