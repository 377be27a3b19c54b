// Each built-in detector: a case that fires it and one that stays just below or outside it.
import t from 'tap'
import type { AuditEvent } from '../../../agent/audit/event.ts'
import { Detectors, type DetectorFinding } from '../../../agent/anomaly/detectors.ts'
import { cases } from './builtin-cases.ts'

const findingsOf = (events: AuditEvent[]) => {
  const d = new Detectors({ builtin: true, dirs: [] })
  const out: DetectorFinding[] = []
  for (const e of events) d.inspect(e, out)
  return out
}

t.test('every built-in detector has a case', async (t) => {
  t.same(new Detectors({ builtin: true, dirs: [] }).detectors.map((d) => d.id).sort(), cases.map((c) => c.id).sort())
})

for (const c of cases) {
  t.test(c.id, async (t) => {
    const fired = findingsOf(c.fires()).filter((f) => f.id === c.id)
    t.equal(fired.length, 1, 'fires once')
    t.ok(fired[0]?.message.length, fired[0]?.message ?? 'no finding')
    t.same(findingsOf(c.quiet()).filter((f) => f.id === c.id), [], `quiet: ${c.because}`)
  })
}
