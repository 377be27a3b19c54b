import t, { type Test } from 'tap'
import type { AuditEvent } from '../../../agent/audit/event.ts'
import { Detectors, eventTimeMs, type DetectorFinding } from '../../../agent/anomaly/detectors.ts'
import { AgentMetrics } from '../../../agent/observe/metrics.ts'
import { at, T0 } from './events.ts'

const run = (d: Detectors, events: AuditEvent[]) => {
  const all: DetectorFinding[] = []
  for (const e of events) d.inspect(e, all)
  return all
}
const only = (t: Test, yaml: string) => new Detectors({ builtin: false, dirs: [t.testdir({ 'd.yaml': yaml })] })

const THRESHOLD = 'id: burst\ntitle: A burst\nseverity: high\nkey: [user]\nwindow: 60s\ntrigger:\n  threshold: 5\ncoolDown: 5m\n'

t.test('threshold: every event past N per key in the window is a finding of the burst, which says how big it became', async (t) => {
  const d = only(t, THRESHOLD)
  const burst = (startMs: number, user: string, n: number, stepMs = 1000) => Array.from({ length: n }, (_, i) => at(startMs + i * stepMs, { user: { username: user } }))
  t.same(run(d, burst(0, 'alice', 5)), [], 'five is not more than five')
  const f = run(d, burst(5000, 'alice', 10))
  t.equal(f.length, 10, 'each event past the threshold (they group into one finding by key)')
  t.match(f[0], { source: 'detector', id: 'burst', severity: 'high', details: { count: '6', threshold: '5', window: '1m', key: 'user=alice', burstCount: '6', burstPeak: '6', burstFirstSeen: new Date(T0).toISOString() } })
  t.match(f[0]!.message, /^6 events in 1m for user=alice, more than the threshold of 5: A burst$/)
  t.match(f.at(-1)!.details, { count: '15', burstCount: '15', burstPeak: '15', burstLastSeen: new Date(T0 + 14_000).toISOString() })
  t.same(run(d, burst(20_000, 'bob', 5)), [], 'another key counts apart')
  // Refused 200 times in 100 s: a window never holds all of them, the burst does.
  const long = run(d, burst(200_000, 'mallory', 200, 500)).at(-1)!
  t.equal(long.details.burstCount, '200', 'the burst says 200, not the 6 it crossed at')
  const peak = Number(long.details.burstPeak)
  t.ok(peak >= 110 && peak <= 131, `its peak is a window's worth (${peak} in 1m)`)
  t.match(long.message, /; the burst so far: 200 events from \S+ to \S+, at most \d+ in 1m: A burst$/)
  t.equal(run(d, burst(500_000, 'mallory', 6)).at(-1)!.details.burstCount, '6', 'a quiet window ended it: the next burst counts from its own start')
  t.same(run(d, burst(700_000, 'carol', 20, 20_000)), [], 'spread over more than the window: never more than 3 at once')
})

t.test('windows slide on event time: a backlog read fast gives what live reading gave', async (t) => {
  const events = Array.from({ length: 300 }, (_, i) => at(i * 3000 + (i % 7) * 100, { user: { username: i % 3 === 0 ? 'bob' : 'alice' }, responseStatus: { code: 403 } }))
  for (let i = 100; i < 130; i++) events[i] = at(100 * 3000 + (i - 100) * 200, { user: { username: 'mallory' } })
  const first = run(only(t, THRESHOLD.replace('threshold: 5', 'threshold: 20')), events)
  const second = run(only(t, THRESHOLD.replace('threshold: 5', 'threshold: 20')), events)
  t.same([...new Set(first.map((f) => f.details.key))], ['user=mallory'], 'only mallory\'s burst')
  t.equal(first.length, 10, 'its events past the threshold of 20')
  t.same(second, first, 'a replay gives identical findings')
})

t.test('bounded state: a million distinct users never hold more than maxKeys; evictions are counted', async (t) => {
  const metrics = new AgentMetrics()
  const d = new Detectors({ builtin: false, dirs: [t.testdir({ 'd.yaml': `${THRESHOLD}maxKeys: 1000\n` })], metrics })
  const out: DetectorFinding[] = []
  const e = at(0)
  for (let i = 0; i < 1_000_000; i++) {
    e.user = { username: `user-${i}-${(i * 2654435761) % 1e9}` }
    e.stageTimestamp = new Date(Date.parse('2026-11-25T10:00:00Z') + i).toISOString()
    d.inspect(e, out)
    if (i % 100_000 === 0) t.ok(d.keysHeld().get('burst')! <= 1000, `${i} events: within the bound`)
  }
  t.equal(d.keysHeld().get('burst'), 1000)
  t.same(out, [])
  const evicted = (await metrics.detectorEvictions.get()).values.find((v) => v.labels.detector === 'burst')?.value ?? 0
  t.ok(evicted + d.evictions().get('burst')! >= 998_000, `evictions counted (${evicted})`)
})

t.test('baseline: far above the key\'s own history, only after warm-up', async (t) => {
  const d = only(t, 'id: rate\ntitle: Rate\nseverity: medium\nkey: [user]\nwindow: 60s\ntrigger:\n  baseline: { sigmas: 4, factor: 3, minCount: 50, warmupWindows: 10 }\n')
  const minute = (m: number, n: number, user = 'alice') => Array.from({ length: n }, (_, i) => at(m * 60_000 + Math.floor((i * 59_000) / n), { user: { username: user } }))
  t.same(run(d, minute(0, 200, 'newcomer')), [], 'no history yet: warm-up')
  const history = Array.from({ length: 20 }, (_, m) => minute(m, 20 + (m % 3))).flat()
  t.same(run(d, history), [])
  t.same(run(d, minute(20, 45)), [], 'above the mean but below minCount')
  const spike = run(d, minute(21, 200))
  t.equal(spike.length, 1)
  t.match(spike[0]!.details, { key: 'user=alice', window: '1m', count: String(Number(spike[0]!.details.count)) })
  t.ok(Number(spike[0]!.details.baselineMean) > 15 && Number(spike[0]!.details.baselineMean) < 30, `baseline mean ${spike[0]!.details.baselineMean}`)
  t.match(spike[0]!.message, /events in 1m for user=alice, against a baseline of [\d.]+ ± [\d.]+ per window/)
})

t.test('first seen: a new value for a known key, after learning', async (t) => {
  const d = only(t, 'id: new-ip\ntitle: New IP\nseverity: low\nkey: [user]\nwindow: 60s\ntrigger:\n  firstSeen: sourceIP\n  learning: 10m\ncoolDown: 1m\n')
  const from = (ms: number, ip: string, user = 'sa') => at(ms, { user: { username: user }, sourceIPs: [ip] })
  t.same(run(d, [from(0, '10.0.0.1'), from(60_000, '10.0.0.2'), from(120_000, '10.0.0.1')]), [], 'learning')
  t.same(run(d, [from(700_000, '10.0.0.2')]), [], 'known value')
  const f = run(d, [from(710_000, '192.0.2.66'), from(720_000, '192.0.2.67')])
  t.equal(f.length, 1, 'the second new value falls in the cool-down')
  t.match(f[0]!.details, { key: 'user=sa', field: 'sourceIP', value: '192.0.2.66', knownValues: '2' })
  t.equal(run(d, [from(800_000, '192.0.2.68')]).length, 1)
  t.same(run(d, [from(900_000, '192.0.2.66')]), [], 'now known')
})

t.test('unanswered: a RequestReceived without its response within the limit', async (t) => {
  const d = only(t, 'id: dropped\ntitle: Dropped\nseverity: high\nmatch:\n  verbs: [create]\n  stages: [RequestReceived]\ntrigger:\n  unanswered: 60s\n')
  const req = (ms: number, id: string, stage: string) => at(ms, { auditID: id, stage, verb: 'create', requestURI: '/api/v1/namespaces/default/configmaps' })
  const findings = run(d, [
    req(0, 'answered', 'RequestReceived'), req(100, 'answered', 'ResponseComplete'),
    req(1000, 'lost', 'RequestReceived'),
    req(2000, 'started', 'RequestReceived'), req(2100, 'started', 'ResponseStarted'),
    ...Array.from({ length: 70 }, (_, i) => at(3000 + i * 1000)),
  ])
  t.equal(findings.length, 1)
  t.match(findings[0], { id: 'dropped', auditId: 'lost', details: { user: 'alice', verb: 'create', requestURI: '/api/v1/namespaces/default/configmaps', requestReceivedAt: '2026-11-25T10:00:01.000Z' } })
  t.match(findings[0]!.message, /alice did create \/api\/v1\/namespaces\/default\/configmaps at 2026-11-25T10:00:01\.000Z and no response was logged within 1m/)
})

t.test('silence: a long pause between two events', async (t) => {
  const d = only(t, 'id: silent\ntitle: Silent\nseverity: high\ntrigger:\n  silence: 5m\n')
  t.same(run(d, [at(0), at(60_000), at(360_000)]), [], 'exactly at the limit is not over it')
  const f = run(d, [at(700_000)])
  t.equal(f.length, 1)
  t.match(f[0]!.details, { silentSeconds: '340', after: '5m' })
  t.same(run(d, [at(600_000)]), [], 'an event late by minutes does not count as a new silence')
})

t.test('event time: stageTimestamp, else requestReceivedTimestamp or the legacy timestamp; none means not counted', async (t) => {
  t.equal(eventTimeMs(at(1500)), Date.parse('2026-11-25T10:00:01.500Z'))
  t.equal(eventTimeMs({ ...at(0), stageTimestamp: undefined, requestReceivedTimestamp: '2026-11-25T10:00:02Z' }), Date.parse('2026-11-25T10:00:02Z'))
  t.equal(eventTimeMs({ ...at(0), stageTimestamp: 'garbage', requestReceivedTimestamp: undefined }), undefined)
  const d = only(t, THRESHOLD.replace('threshold: 5', 'threshold: 1'))
  t.same(run(d, [0, 1, 2].map(() => ({ ...at(0), stageTimestamp: 'x', requestReceivedTimestamp: undefined }))), [])
})
