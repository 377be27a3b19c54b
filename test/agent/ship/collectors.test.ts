// Which collector a request goes to: failover on "not there" reasons only, in turn, and back to the
// preferred one through a probe after the failback interval, longer after each failed probe (a clock the test moves).
import t from 'tap'
import { CollectorChoice, MAX_PROBE_BACKOFF } from '../../../agent/ship/collectors.ts'

const [A, B, C] = ['https://a:8443', 'https://b:8443', 'https://c:8443']

t.test('one collector: nothing moves, whatever fails', async (t) => {
  const c = new CollectorChoice([A!], 1000)
  for (const reason of ['transport', 'timeout', 'unavailable']) t.equal(c.failed(A!, reason), undefined)
  t.equal(c.next(), A)
})

t.test('transport, timeout and unavailable move to the next in turn; a refusal on the merits does not', async (t) => {
  let now = 0
  const c = new CollectorChoice([A!, B!, C!], 1000, () => now)
  for (const reason of ['permission_denied', 'failed_precondition', 'out_of_range', 'resource_exhausted', 'bad_acknowledgement', 'internal']) {
    t.equal(c.failed(A!, reason), undefined, reason)
  }
  t.equal(c.next(), A)
  t.same(c.failed(A!, 'transport'), { from: A, to: B, reason: 'transport' })
  t.equal(c.next(), B)
  t.same(c.failed(B!, 'timeout'), { from: B, to: C, reason: 'timeout' })
  t.same(c.failed(C!, 'unavailable'), { from: C, to: A, reason: 'unavailable' }, 'round the list to the first')
  t.equal(c.next(), A)
  now += 5000
  t.equal(c.next(), A, 'on the preferred one, nothing to probe')
})

t.test('away from the preferred one, a request probes it once per interval; success brings the agent back', async (t) => {
  let now = 0
  const c = new CollectorChoice([A!, B!], 1000, () => now)
  c.failed(A!, 'transport')
  t.equal(c.next(), B)
  t.equal(c.succeeded(B!), undefined, 'an answer from where it is changes nothing')
  now = 999
  t.equal(c.next(), B, 'not before the interval')
  now = 1000
  t.equal(c.next(), A, 'then a probe')
  t.equal(c.failed(A!, 'transport'), undefined, 'a failed probe is no switch')
  t.equal(c.current, B, 'it stays where it is')
  now = 2999
  t.equal(c.next(), B, 'and waits twice as long before the next probe')
  now = 3000
  t.equal(c.next(), A)
  t.same(c.succeeded(A!), { from: B, to: A, reason: 'failback' })
  t.equal(c.next(), A)
  t.equal(c.current, A)
})

t.test('failed probes wait longer each time, up to MAX_PROBE_BACKOFF intervals; a new failover starts from one interval', async (t) => {
  let now = 0
  const c = new CollectorChoice([A!, B!], 1000, () => now)
  c.failed(A!, 'timeout')
  const waits: number[] = []
  for (let i = 0; i < 6; i++) {
    const from = now
    while (c.next() !== A) now += 100
    waits.push(now - from)
    c.failed(A!, 'timeout')
  }
  t.same(waits, [1000, 2000, 4000, 8000, 8000, 8000])
  t.equal(MAX_PROBE_BACKOFF, 8, 'the cap the waits above stop at')
  now += 8000
  t.same(c.succeeded(A!), { from: B, to: A, reason: 'failback' })
  c.failed(A!, 'transport')
  const from = now
  while (c.next() !== A) now += 100
  t.equal(now - from, 1000, 'after a return, the next failover probes after one interval again')
})
