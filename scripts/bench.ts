#!/usr/bin/env node
// `npm run bench`: what the agent costs a control-plane node, in one run.
//   1. the floor: a bare line split + JSON.parse over the same log
//   2. the agent at full speed: catch-up from the head of a large log, built-in
//      rules and detectors on; then the same log with them off (their cost)
//   3. the agent at a steady 3,000 events/s: append-to-ack latency, CPU
//   4. an outage: the collector down for 60 s at 3,000 events/s, then back
// The agent runs as its own process (the real CLI); the collector runs in this
// process on 127.0.0.1 so its stream head can be watched without extra traffic.
// Prints the figures, writes them as JSON to bench-out/, and adds a dated
// row to the Pipeline table of docs/benchmarks.md.
//   node scripts/bench.ts [--events N] [--outage-seconds S] [--steady-seconds S] [--log FILE]
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { appendFileSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { pino } from 'pino'
import { generateKeyPair } from '../agent/keygen.ts'
import { AGENT_ENV, AGENT_NODE_FLAGS } from '../agent/process-settings.ts'
import { exportStream } from '../collector/export.ts'
import { startCollector, type Collector } from '../collector/server.ts'
import { loadTrustedKeys } from '../proto/keys.ts'
import { decodeBatch, decodeSealedBatch } from '../proto/wire.ts'
import { expectedExport } from '../agent/redact/expected-export.ts'
import { insertBenchmarkRow } from './benchmarks-doc.ts'
import { generateAuditLog } from './generate-audit-log.ts'

const MAIN = fileURLToPath(new URL('../programs/main.ts', import.meta.url))
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const STREAM = 'bench-node'

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '300000' },
    'steady-seconds': { type: 'string', default: '30' },
    'outage-seconds': { type: 'string', default: '60' },
    rate: { type: 'string', default: '3000' },
  },
  strict: true,
})
const EVENTS = Number(values.events)
const STEADY_S = Number(values['steady-seconds'])
const OUTAGE_S = Number(values['outage-seconds'])
const RATE = Number(values.rate)

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const say = (s: string) => process.stdout.write(`${s}\n`)

/** CPU seconds and peak RSS of a process, from /proc. */
function procStats(pid: number): { cpuSeconds: number; peakRssBytes: number; rssBytes: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(fields[11]) + Number(fields[12])
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024
  return { cpuSeconds: ticks / 100, peakRssBytes: kb('VmHWM'), rssBytes: kb('VmRSS') }
}

interface Rig {
  dir: string
  logDir: string
  store: string
  keyFile: string
  trusted: ReturnType<typeof loadTrustedKeys>
  collector: Collector
  port: number
  agent?: ChildProcess
}

async function rig(name: string, port = 0): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), `auditrail-bench-${name}-`))
  const logDir = join(dir, 'log')
  mkdirSync(logDir)
  mkdirSync(join(dir, 'state'), { mode: 0o700 })
  const keys = generateKeyPair(join(dir, 'node'))
  const trusted = loadTrustedKeys([keys.publicKeyFile])
  const store = join(dir, 'store')
  // The collector's query index has its own benchmark (bench:query); here the agent is measured, not the indexing.
  const collector = await startCollector({ listen: { host: '127.0.0.1', port }, storeDir: store, trustedKeys: trusted, logger: pino({ level: 'silent' }), index: false })
  return { dir, logDir, store, keyFile: keys.keyFile, trusted, collector, port: collector.port }
}

/** The agent as the image runs it: its own process, with its V8 flags and environment. */
function startAgent(r: Rig, agentArgs: string[] = []): ChildProcess {
  const child = spawn(
    process.execPath,
    [...AGENT_NODE_FLAGS, MAIN, 'agent', ...agentArgs, '--node', STREAM, '--collector', `http://127.0.0.1:${r.port}`, '--log', join(r.logDir, 'audit.log'), '--state-dir', join(r.dir, 'state'), '--key', r.keyFile, '--metrics-listen', '127.0.0.1:0', '--log-level', 'warn'],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...AGENT_ENV } },
  )
  r.agent = child
  return child
}

/** Position (inode, end offset) of the collector's head batch, decoded only when the head moves. */
function headWatcher(r: Rig) {
  let seq = -1
  let pos = { inode: 0, offset: 0, sequence: 0 }
  return async () => {
    const head = await r.collector.store.head(STREAM)
    if (head && head.sequence !== seq) {
      seq = head.sequence
      const b = decodeBatch(decodeSealedBatch(head.sealed).batch)
      pos = { inode: b.source.inode, offset: b.source.endOffset, sequence: b.sequence }
    }
    return pos
  }
}

function liveEnd(logDir: string): { inode: number; size: number } {
  const st = statSync(join(logDir, 'audit.log'))
  return { inode: st.ino, size: st.size }
}

async function exportSha(r: Rig): Promise<{ sha256: string; lines: number }> {
  const hash = createHash('sha256')
  const { lines } = await exportStream(r.store, { out: new Writable({ write(c: Buffer, _e, cb) { hash.update(c); cb() } }) })
  return { sha256: hash.digest('hex'), lines }
}

async function done(r: Rig): Promise<void> {
  r.agent?.kill('SIGTERM')
  await new Promise((res) => (r.agent && r.agent.exitCode === null ? r.agent.once('exit', res) : res(undefined)))
  await r.collector.close()
  rmSync(r.dir, { recursive: true, force: true })
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN
}

// --- 1 and 2: the floor, then the agent catching up from the head of one large file

async function fullSpeed() {
  const r = await rig('full')
  const expected = expectedExport(join(r.dir, 'state'))
  const gen = await generateAuditLog({ dir: r.logDir, events: EVENTS, rate: 0, seed: 6, maxBytes: Number.MAX_SAFE_INTEGER, maxBackups: 0, gzipEvery: 0, mode: 'rename', onLine: (_w, line) => expected.add(line.subarray(0, -1)) })
  const file = join(r.logDir, 'audit.log')

  // The floor: read in 1 MiB chunks, split on bytes, JSON.parse each line.
  const t0 = performance.now()
  const fd = openSync(file, 'r')
  const buf = Buffer.allocUnsafe(1024 * 1024)
  let carry = ''
  let parsed = 0
  for (let n = readSync(fd, buf); n > 0; n = readSync(fd, buf)) {
    const text = carry + buf.toString('utf8', 0, n)
    let start = 0
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      JSON.parse(text.slice(start, nl))
      parsed++
      start = nl + 1
    }
    carry = text.slice(start)
  }
  closeSync(fd)
  const floorS = (performance.now() - t0) / 1000
  const floor = { events: parsed, seconds: floorS, eventsPerSecond: parsed / floorS, mbPerSecond: gen.bytes / 1e6 / floorS }

  const run = await catchUp(r)
  const seconds = run.seconds
  const peak = run.peakRssBytes
  const cpu = run.cpuSeconds
  const out = await exportSha(r)
  // The same log once more, rules and detectors off: what inspection costs the agent.
  const bare = await rig('bare')
  copyFileSync(file, join(bare.logDir, 'audit.log'))
  await done(r)
  const config = join(bare.dir, 'agent.yaml')
  writeFileSync(config, 'rules:\n  builtin: false\ndetectors:\n  builtin: false\n')
  const bareRun = await catchUp(bare, ['--config', config])
  await done(bare)
  return {
    floor,
    agent: {
      events: gen.events,
      megabytes: gen.bytes / 1e6,
      seconds,
      eventsPerSecond: gen.events / seconds,
      mbPerSecond: gen.bytes / 1e6 / seconds,
      ratioToFloor: gen.events / seconds / floor.eventsPerSecond,
      cpuSecondsPerMillionEvents: (cpu / gen.events) * 1e6,
      peakRssMiB: peak / 1048576,
      exportMatches: out.sha256 === expected.sha256() && out.lines === gen.events,
      withoutInspection: { eventsPerSecond: gen.events / bareRun.seconds, cpuSecondsPerMillionEvents: (bareRun.cpuSeconds / gen.events) * 1e6, peakRssMiB: bareRun.peakRssBytes / 1048576 },
    },
  }
}

/** Starts the agent on the rig's log and waits until the collector holds its end; CPU and peak RSS of the agent. */
async function catchUp(r: Rig, agentArgs: string[] = []): Promise<{ seconds: number; cpuSeconds: number; peakRssBytes: number }> {
  const head = headWatcher(r)
  const { size, inode } = liveEnd(r.logDir)
  const started = performance.now()
  const agent = startAgent(r, agentArgs)
  let peak = 0
  let cpu = 0
  while (true) {
    const p = await head()
    try {
      const s = procStats(agent.pid!)
      peak = Math.max(peak, s.peakRssBytes)
      cpu = s.cpuSeconds
    } catch {}
    if (p.inode === inode && p.offset === size) break
    await sleep(20)
  }
  return { seconds: (performance.now() - started) / 1000, cpuSeconds: cpu, peakRssBytes: peak }
}

// --- 3 and 4: steady rate, with an outage of the collector in the middle of its own run

interface Sample { inode: number; offset: number; at: number }

async function steadyAndOutage() {
  let r = await rig('steady')
  const head = headWatcher(r)
  const agent = startAgent(r)
  // Wait for the agent to be in sync (its first heartbeat or batch) before the log moves.
  while (!(await r.collector.store.head(STREAM))) await sleep(20)

  const expected = expectedExport(join(r.dir, 'state'))
  const samples: Sample[] = []
  const latencies: number[] = []
  let watching = true
  const watch = (async () => {
    while (watching) {
      const p = await head()
      const now = performance.now()
      while (samples.length > 0 && samples[0]!.inode === p.inode && samples[0]!.offset <= p.offset) latencies.push(now - samples.shift()!.at)
      await sleep(2)
    }
  })()

  const total = RATE * (STEADY_S + OUTAGE_S + 20)
  let n = 0
  let sampling = true
  const controller = new AbortController()
  const writing = generateAuditLog(
    {
      dir: r.logDir, events: total, rate: RATE, seed: 9, maxBytes: 100 * 1024 * 1024, maxBackups: 0, gzipEvery: 0, mode: 'rename',
      onLine: (w, line) => {
        expected.add(line.subarray(0, -1))
        if (sampling && n++ % 10 === 0) samples.push({ ...w.position(), at: performance.now() })
      },
    },
    controller.signal,
  )
  await sleep(2000)
  const cpu0 = procStats(agent.pid!).cpuSeconds
  const t0 = performance.now()
  latencies.length = 0
  await sleep(STEADY_S * 1000)
  const cpuPercent = ((procStats(agent.pid!).cpuSeconds - cpu0) / ((performance.now() - t0) / 1000)) * 100
  const steady = { rate: RATE, seconds: STEADY_S, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99), maxMs: Math.max(...latencies), samples: latencies.length, cpuPercentOfOneCore: cpuPercent, peakRssMiB: procStats(agent.pid!).peakRssBytes / 1048576 }

  // The outage: stop the collector, keep writing, watch the agent's memory.
  sampling = false
  samples.length = 0
  const port = r.port
  await r.collector.close()
  let outagePeak = 0
  const outageEnd = performance.now() + OUTAGE_S * 1000
  while (performance.now() < outageEnd) {
    outagePeak = Math.max(outagePeak, procStats(agent.pid!).rssBytes)
    await sleep(200)
  }
  r.collector = await startCollector({ listen: { host: '127.0.0.1', port }, storeDir: r.store, trustedKeys: r.trusted, logger: pino({ level: 'silent' }), index: false })
  const back = performance.now()
  // Catch-up: until the head reaches where the log was when the collector came back...
  const target = liveEnd(r.logDir)
  while (true) {
    const p = await head()
    outagePeak = Math.max(outagePeak, procStats(agent.pid!).rssBytes)
    if (p.inode === target.inode && p.offset >= target.size) break
    await sleep(20)
  }
  const catchUpS = (performance.now() - back) / 1000
  const backlogEvents = RATE * OUTAGE_S
  controller.abort()
  const gen = await writing
  // ...then let it finish what was written since.
  const end = liveEnd(r.logDir)
  for (let p = await head(); !(p.inode === end.inode && p.offset === end.size); p = await head()) await sleep(20)
  watching = false
  await watch
  const out = await exportSha(r)
  await done(r)
  return {
    steady,
    outage: {
      seconds: OUTAGE_S,
      peakRssMiB: Math.max(outagePeak, 0) / 1048576,
      catchUpSeconds: catchUpS,
      catchUpRateVsLive: backlogEvents / catchUpS / RATE,
      eventsWritten: gen.events,
      exportMatches: out.sha256 === expected.sha256() && out.lines === gen.events,
    },
  }
}

const started = new Date()
say(`auditrail bench: ${EVENTS} events full speed; ${RATE}/s steady for ${STEADY_S}s; collector outage ${OUTAGE_S}s (node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'} x${cpus().length})`)
const full = await fullSpeed()
say(`1. floor (split + JSON.parse):   ${Math.round(full.floor.eventsPerSecond)} events/s, ${full.floor.mbPerSecond.toFixed(1)} MB/s`)
say(`2. agent at full speed:          ${Math.round(full.agent.eventsPerSecond)} events/s, ${full.agent.mbPerSecond.toFixed(1)} MB/s (${(full.agent.ratioToFloor * 100).toFixed(0)}% of the floor), ${full.agent.cpuSecondsPerMillionEvents.toFixed(1)} CPU s per million events, peak RSS ${full.agent.peakRssMiB.toFixed(0)} MiB, export ${full.agent.exportMatches ? 'matches' : 'DIFFERS'}`)
const bare = full.agent.withoutInspection
say(`   same log, rules and detectors off: ${Math.round(bare.eventsPerSecond)} events/s, ${bare.cpuSecondsPerMillionEvents.toFixed(1)} CPU s per million events, peak RSS ${bare.peakRssMiB.toFixed(0)} MiB: with them on, ${((full.agent.eventsPerSecond / bare.eventsPerSecond) * 100).toFixed(0)}% of that`)
const steadyRun = await steadyAndOutage()
const s = steadyRun.steady
const o = steadyRun.outage
say(`3. steady ${s.rate}/s:                append-to-ack p50 ${s.p50Ms.toFixed(0)} ms, p99 ${s.p99Ms.toFixed(0)} ms, max ${s.maxMs.toFixed(0)} ms (${s.samples} samples); agent CPU ${s.cpuPercentOfOneCore.toFixed(1)}% of one core; peak RSS ${s.peakRssMiB.toFixed(0)} MiB`)
say(`4. collector down ${o.seconds}s:          agent peak RSS ${o.peakRssMiB.toFixed(0)} MiB; caught up in ${o.catchUpSeconds.toFixed(1)} s (${o.catchUpRateVsLive.toFixed(1)}x the live rate); export ${o.exportMatches ? 'matches the source: nothing lost' : 'DIFFERS from the source'}`)

const result = { date: started.toISOString(), node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, ...full, ...steadyRun }
mkdirSync(join(ROOT, 'bench-out'), { recursive: true })
const jsonFile = join(ROOT, 'bench-out', `bench-${started.toISOString().replace(/[:.]/g, '-')}.json`)
writeFileSync(jsonFile, `${JSON.stringify(result, null, 2)}\n`)
insertBenchmarkRow(join(ROOT, 'docs', 'benchmarks.md'), 'Pipeline', `| ${started.toISOString().slice(0, 10)} | ${process.version} | ${result.cpu} x${result.cores} | ${Math.round(full.floor.eventsPerSecond)} | ${Math.round(full.agent.eventsPerSecond)} | ${(full.agent.ratioToFloor * 100).toFixed(0)}% | ${full.agent.cpuSecondsPerMillionEvents.toFixed(1)} | ${full.agent.peakRssMiB.toFixed(0)} MiB | ${s.p50Ms.toFixed(0)} / ${s.p99Ms.toFixed(0)} / ${s.maxMs.toFixed(0)} | ${s.cpuPercentOfOneCore.toFixed(1)} | ${o.peakRssMiB.toFixed(0)} MiB | ${o.catchUpRateVsLive.toFixed(1)} | ${full.agent.exportMatches && o.exportMatches ? 'yes' : 'NO'} | ${Math.round(bare.eventsPerSecond)} (${((full.agent.eventsPerSecond / bare.eventsPerSecond) * 100).toFixed(0)}%) |`)
say(`figures: ${jsonFile}; row added to the Pipeline table of docs/benchmarks.md`)
