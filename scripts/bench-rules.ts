#!/usr/bin/env node
// `npm run bench:rules`: what guardrail rules and anomaly detectors cost, in one run.
//   1. a million events from distinct random users through the built-in
//      detectors, first, in a fresh process: keys held (bounded by maxKeys),
//      evictions, heap and peak RSS;
//   2. throughput of the inspection stage on the generator's mix (decode, then
//      nothing / the built-in rules / the built-in detectors / both), in this
//      process, lines held in memory so that only the stage is measured.
// Prints the figures, writes them as JSON to bench-out/, and appends a dated
// row to the Rules and detectors table of docs/benchmarks.md.
//   node scripts/bench-rules.ts [--events N] [--rounds N] [--log FILE]
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { decodeAuditLine, type AuditEvent } from '../agent/audit/event.ts'
import { Detectors } from '../agent/anomaly/detectors.ts'
import { BUILTIN_RULES_DIR, loadRuleSet, type RuleFinding } from '../agent/guard/rule-set.ts'
import { generateAuditLog } from './generate-audit-log.ts'
import { insertBenchmarkRow } from './benchmarks-doc.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values } = parseArgs({ options: { events: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '5' }, log: { type: 'string' } }, strict: true })
const say = (s: string) => process.stdout.write(`${s}\n`)

const work = mkdtempSync(join(tmpdir(), 'auditrail-bench-rules-'))
try {
  // First, in a fresh process: the detectors' memory under a flood of distinct identities.
  say('a million events from distinct random users through the built-in detectors ...')
  const before = process.memoryUsage()
  const detectors = new Detectors({ builtin: true, dirs: [] })
  const event: AuditEvent = { kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Metadata', auditID: '', stage: 'ResponseComplete', verb: 'get', requestURI: '/api/v1/namespaces/default/pods', user: {} }
  const out: RuleFinding[] = []
  const t0 = Date.parse('2026-11-25T00:00:00Z')
  let peakRss = before.rss
  // Four kinds of request, so that every keyed detector sees the flood: refusals, secret reads, deletes, service accounts.
  const kinds: Partial<AuditEvent>[] = [
    { verb: 'get', responseStatus: { code: 403 }, objectRef: { resource: 'pods', namespace: 'default', name: 'p' } },
    { verb: 'get', responseStatus: { code: 200 }, objectRef: { resource: 'secrets', namespace: 'default', name: 's' } },
    { verb: 'delete', responseStatus: { code: 200 }, objectRef: { resource: 'configmaps', namespace: 'default', name: 'c' } },
    { verb: 'list', responseStatus: { code: 200 }, objectRef: { resource: 'pods', namespace: 'default' } },
  ]
  for (let i = 0; i < 1_000_000; i++) {
    Object.assign(event, kinds[i % 4], { stage: 'ResponseComplete', auditID: `a-${i}`, stageTimestamp: new Date(t0 + i).toISOString() })
    const id = Math.random().toString(36).slice(2)
    event.user = { username: i % 4 === 3 ? `system:serviceaccount:ns-${id}:sa` : `user-${id}`, groups: ['system:authenticated'] }
    event.sourceIPs = [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`]
    event.userAgent = `agent-${i % 1000}`
    out.length = 0
    detectors.inspect(event, out)
    if (i % 50_000 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss)
  }
  globalThis.gc?.()
  const after = process.memoryUsage()
  peakRss = Math.max(peakRss, after.rss)
  const keys = Object.fromEntries(detectors.keysHeld())
  const maxKeys = Object.fromEntries(detectors.detectors.map((d) => [d.id, d.maxKeys]))
  const bounded = Object.entries(keys).every(([id, n]) => n <= maxKeys[id]!)
  say(`keys held: ${JSON.stringify(keys)}; every detector within its maxKeys: ${bounded ? 'yes' : 'NO'}`)
  say(`heap used ${(before.heapUsed / 2 ** 20).toFixed(0)} -> ${(after.heapUsed / 2 ** 20).toFixed(0)} MiB; process RSS peak ${(peakRss / 2 ** 20).toFixed(0)} MiB (before the log for the throughput phase is loaded: the detectors and this script)`)

  let file = values.log
  if (!file) {
    say(`generating ${values.events} events ...`)
    await generateAuditLog({ dir: join(work, 'log'), events: Number(values.events), maxBytes: 2 ** 40, seed: 7 })
    file = join(work, 'log', 'audit.log')
  }
  const text = readFileSync(file)
  const lines: Buffer[] = []
  for (let start = 0, nl = text.indexOf(10); nl !== -1; start = nl + 1, nl = text.indexOf(10, start)) lines.push(text.subarray(start, nl))
  say(`${lines.length} lines, ${(text.length / 1e6).toFixed(0)} MB`)

  const rules = loadRuleSet([BUILTIN_RULES_DIR])
  type Stage = { name: string; make: () => ((event: AuditEvent, out: RuleFinding[]) => void) | undefined }
  const stages: Stage[] = [
    { name: 'decode only', make: () => undefined },
    { name: 'decode + rules', make: () => (e, out) => rules.inspect(e, out) },
    { name: 'decode + detectors', make: () => { const d = new Detectors({ builtin: true, dirs: [] }); return (e, out) => d.inspect(e, out) } },
    { name: 'decode + rules + detectors', make: () => { const d = new Detectors({ builtin: true, dirs: [] }); return (e, out) => { rules.inspect(e, out); d.inspect(e, out) } } },
  ]
  // Rounds interleave the stages so that a noisy neighbour slows them all alike; the best round of each counts.
  const best = new Map<string, number>()
  const findings = new Map<string, number>()
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const stage of stages) {
      const inspect = stage.make()
      const out: RuleFinding[] = []
      let found = 0
      const t0 = performance.now()
      for (const line of lines) {
        const d = decodeAuditLine(line)
        if (inspect && 'event' in d) {
          out.length = 0
          inspect(d.event, out)
          found += out.length
        }
      }
      const rate = lines.length / ((performance.now() - t0) / 1000)
      best.set(stage.name, Math.max(best.get(stage.name) ?? 0, rate))
      findings.set(stage.name, found)
    }
  }
  const base = best.get('decode only')!
  for (const stage of stages) {
    const rate = best.get(stage.name)!
    say(`${stage.name.padEnd(28)} ${Math.round(rate).toLocaleString('en')} events/s  (${((rate / base) * 100).toFixed(0)}% of decode only; ${(((1 / rate - 1 / base) * 1e6)).toFixed(1)} us/event; ${findings.get(stage.name)} findings)`)
  }
  const rulesShare = best.get('decode + rules')! / base
  const detectorsShare = best.get('decode + detectors')! / base

  const result = {
    date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, lines: lines.length,
    eventsPerSecond: Object.fromEntries(best), rulesShareOfDecode: rulesShare, detectorsShareOfDecode: detectorsShare,
    million: { keys, bounded, heapUsedMiB: after.heapUsed / 2 ** 20, peakRssMiB: peakRss / 2 ** 20 },
  }
  mkdirSync(join(ROOT, 'bench-out'), { recursive: true })
  const jsonFile = join(ROOT, 'bench-out', `bench-rules-${result.date.replace(/[:.]/g, '-')}.json`)
  writeFileSync(jsonFile, `${JSON.stringify(result, null, 2)}\n`)
  const rate = (name: string) => Math.round(best.get(name)!).toLocaleString('en')
  insertBenchmarkRow(join(ROOT, 'docs', 'benchmarks.md'), 'Rules and detectors', `| ${result.date.slice(0, 10)} | ${process.version} | ${result.cpu} x${result.cores} | ${rate('decode only')} | ${rate('decode + rules')} (${(rulesShare * 100).toFixed(0)}%) | ${rate('decode + detectors')} (${(detectorsShare * 100).toFixed(0)}%) | ${rate('decode + rules + detectors')} | ${bounded ? 'yes' : 'NO'}, heap ${(after.heapUsed / 2 ** 20).toFixed(0)} MiB, peak RSS ${(peakRss / 2 ** 20).toFixed(0)} MiB |`)
  say(`figures: ${jsonFile}; row added to the Rules and detectors table of docs/benchmarks.md`)
} finally {
  rmSync(work, { recursive: true, force: true })
}
