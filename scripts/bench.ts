#!/usr/bin/env node
// `npm run bench`: what the agent costs a control-plane node, in one run.
//   1. the floor: a bare line split + JSON.parse over the same log
//   2. the agent at full speed: catch-up from the head of a large log, built-in
//      rules and detectors on; then the same log with them off (their cost)
//   3. the agent at a steady 3,000 events/s: append-to-ack latency, CPU
//   4. an outage: the collector down for 60 s at 3,000 events/s, then back
//   5. real apiserver output (v1.26), repeated to --real-events, at full speed;
//      with FLUENT_BIT set, Fluent Bit over the same file, interleaved
//   6. (--phase http2, on request) the same real log under TLS, the agent with
//      collector.http2 never (HTTP/1.1) and auto (h2 by ALPN), runs interleaved
// The agent runs as its own process (the real CLI). In phases 1 to 4 the
// collector runs in this process on 127.0.0.1 so its stream head can be watched
// without extra traffic; in phase 5 it runs in its own process with its query
// index (scripts/collector-process.ts), so that its CPU per event is its own.
// Prints the figures, writes them as JSON to bench-out/, and adds a dated
// row per phase to docs/benchmarks.md (Pipeline; Real apiserver log).
//   node scripts/bench.ts [--phase pipeline|real|http2]... [--events N] [--outage-seconds S] [--steady-seconds S]
//                         [--real-events N] [--runs N] [--http2 auto|always|never] [--cpu-prof DIR]
//   --http2: the agents' collector.http2 in phases 1 to 5 (plaintext there: always is h2c, the others HTTP/1.1)
//   FLUENT_BIT=/path/to/run.sh: a script with the interface of ../shared/tools/fluent-bit/run.sh
//   (`run.sh FILE` prints one JSON line: wall_ms, cpu_s, peak_rss_mib)
import { execFile, fork, spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { gunzipSync } from 'node:zlib'
import { pino } from 'pino'
import { generateKeyPair } from '../agent/keygen.ts'
import { AGENT_ENV, AGENT_NODE_FLAGS } from '../agent/process-settings.ts'
import { exportStream } from '../collector/export.ts'
import { startCollector, type Collector } from '../collector/server.ts'
import { loadTrustedKeys } from '../proto/keys.ts'
import { decodeBatch, decodeSealedBatch } from '../proto/wire.ts'
import { expectedExport } from '../agent/redact/expected-export.ts'
import type { Http2Mode } from '../agent/ship/sender.ts'
import { makeCa, makeLeaf } from '../test/agent/ship/tls-certificates.ts'
import type { CollectorUsage, FromCollector, ToCollector } from './collector-process.ts'
import { insertBenchmarkRow } from './benchmarks-doc.ts'
import { build } from './build.ts'
import { generateAuditLog } from './generate-audit-log.ts'

// The agent runs as the image runs it: compiled (scripts/build.ts), with its V8 flags and environment.
const BUILT = fileURLToPath(new URL('../dist', import.meta.url))
const MAIN = join(BUILT, 'programs', 'main.js')
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const STREAM = 'bench-node'

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '300000' },
    'steady-seconds': { type: 'string', default: '30' },
    'outage-seconds': { type: 'string', default: '60' },
    rate: { type: 'string', default: '3000' },
    phase: { type: 'string', multiple: true, default: ['pipeline', 'real'] },
    'real-events': { type: 'string', default: '100000' },
    runs: { type: 'string', default: '2' },
    'cpu-prof': { type: 'string' },
    http2: { type: 'string', default: 'auto' },
  },
  strict: true,
})
const PHASES = new Set(values.phase)
for (const p of PHASES) if (p !== 'pipeline' && p !== 'real' && p !== 'http2') throw new Error(`--phase ${p}: expected pipeline (phases 1 to 4), real (phase 5) or http2 (phase 6)`)
const HTTP2_MODES: readonly Http2Mode[] = ['auto', 'always', 'never']
const HTTP2 = values.http2 as Http2Mode
if (!HTTP2_MODES.includes(HTTP2)) throw new Error(`--http2 ${values.http2}: expected one of ${HTTP2_MODES.join(', ')}`)
const REAL_EVENTS = Number(values['real-events'])
const RUNS = Number(values.runs)
const EVENTS = Number(values.events)
const STEADY_S = Number(values['steady-seconds'])
const OUTAGE_S = Number(values['outage-seconds'])
const RATE = Number(values.rate)
// Where the CPU profiles of the agent and of phase 5's collector go (node --cpu-prof), to find where their time
// goes; off by default because profiling costs CPU. The collector's is the one whose stacks hold collector/.
const PROFILE_FLAGS = values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`] : []

// Long enough to see the agent as a quiet control plane keeps it: after the first heartbeats (every
// 10 s), whose acknowledgements once had V8 compile undici's HTTP parser (WebAssembly) again with its
// optimizing compiler, 10 MiB more RSS from then on that a reading at 5 s did not see.
const IDLE_MS = 30_000
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

/** How the agent is configured beyond its defaults: collector.http2 (default: --http2), the collector's CA (then https), other YAML. */
interface AgentSettings {
  http2?: Http2Mode
  caFile?: string
  yaml?: string
}

/** The agent as the image runs it: its own process, with its V8 flags and environment. */
function startAgent(r: Pick<Rig, 'dir' | 'logDir' | 'keyFile' | 'port' | 'agent'>, settings: AgentSettings = {}): ChildProcess {
  const config = join(r.dir, 'agent.yaml')
  writeFileSync(config, `collector:\n  http2: ${settings.http2 ?? HTTP2}\n${settings.caFile ? `  caFile: ${settings.caFile}\n` : ''}${settings.yaml ?? ''}`)
  const url = `${settings.caFile ? 'https' : 'http'}://127.0.0.1:${r.port}`
  const child = spawn(
    process.execPath,
    [...AGENT_NODE_FLAGS, ...PROFILE_FLAGS, MAIN, 'agent', '--config', config, '--node', STREAM, '--collector', url, '--log', join(r.logDir, 'audit.log'), '--state-dir', join(r.dir, 'state'), '--key', r.keyFile, '--metrics-listen', '127.0.0.1:0', '--log-level', 'warn'],
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

async function exportSha(r: Pick<Rig, 'store'>): Promise<{ sha256: string; lines: number }> {
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
  const bareRun = await catchUp(bare, { yaml: 'rules:\n  builtin: false\ndetectors:\n  builtin: false\n' })
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
async function catchUp(r: Rig, settings: AgentSettings = {}): Promise<{ seconds: number; cpuSeconds: number; peakRssBytes: number }> {
  const head = headWatcher(r)
  const { size, inode } = liveEnd(r.logDir)
  const started = performance.now()
  const agent = startAgent(r, settings)
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
  // Idle: in sync, nothing to read: what the agent costs a quiet control plane.
  await sleep(IDLE_MS)
  const idle = { seconds: IDLE_MS / 1000, rssMiB: procStats(agent.pid!).rssBytes / 1048576 }

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
    idle,
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

// --- 5. real apiserver output, through the agent and (when given) through Fluent Bit, interleaved

const PROJECT_REAL = fileURLToPath(new URL('../test/fixtures/apiserver-v1.26/sample.jsonl.gz', import.meta.url))
const SHARED_REAL = fileURLToPath(new URL('../../shared/fixtures/apiserver-v1.26/all-lines.jsonl.gz', import.meta.url))

/** The real lines (the team's full capture when it is there, else the project's 4,000), whole copies until `minEvents`. */
function realLog(minEvents: number): { source: string; lines: number; copies: number; bytes: Buffer } {
  const source = existsSync(SHARED_REAL) ? SHARED_REAL : PROJECT_REAL
  let once = gunzipSync(readFileSync(source))
  if (once.at(-1) !== 0x0a) once = Buffer.concat([once, Buffer.from('\n')])
  let lines = 0
  for (let i = once.indexOf(0x0a); i !== -1; i = once.indexOf(0x0a, i + 1)) lines++
  const copies = Math.ceil(minEvents / lines)
  return { source, lines: lines * copies, copies, bytes: Buffer.concat(Array.from({ length: copies }, () => once)) }
}

interface CollectorProcess {
  child: ChildProcess
  port: number
  startUsage: CollectorUsage
  request(m: ToCollector): Promise<FromCollector>
}

async function startCollectorProcess(store: string, publicKeyFile: string, tls?: { certFile: string; keyFile: string }): Promise<CollectorProcess> {
  const child = fork(fileURLToPath(new URL('./collector-process.ts', import.meta.url)), [store, publicKeyFile, ...(tls ? [tls.certFile, tls.keyFile] : [])], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [...process.execArgv, ...PROFILE_FLAGS] })
  const next = () => new Promise<FromCollector>((resolve, reject) => {
    child.once('message', (m) => resolve(m as FromCollector))
    child.once('exit', (code) => reject(new Error(`the bench's collector exited (${code})`)))
  })
  const first = await next()
  if (!('ready' in first)) throw new Error('the bench\'s collector did not start')
  return { child, port: first.ready, startUsage: first.usage, request: (m) => (child.send(m), next()) }
}

interface RealRun {
  wallSeconds: number
  cpuSeconds: number
  peakRssMiB: number
  collectorCpuSeconds: number
  collectorPeakRssMiB: number
  /** The agent's acknowledged requests, by HTTP version, as the collector counted them. */
  pushes: CollectorUsage['pushes']
  exportMatches: boolean
}

/** One catch-up of the real log by a fresh agent; done when its checkpoint (moved only after an ack) is at the end. With `tls`, the collector serves TLS and the agent trusts its CA. */
async function realAgentRun(log: Buffer, lines: number, salt: Buffer, expectedSha: string, settings: AgentSettings = {}, tls?: { certFile: string; keyFile: string }): Promise<RealRun> {
  const dir = mkdtempSync(join(tmpdir(), 'auditrail-bench-real-'))
  try {
    const logDir = join(dir, 'log')
    const stateDir = join(dir, 'state')
    mkdirSync(logDir)
    mkdirSync(stateDir, { mode: 0o700 })
    writeFileSync(join(stateDir, 'redaction-salt'), salt, { mode: 0o600 })
    const file = join(logDir, 'audit.log')
    writeFileSync(file, log)
    const { ino } = statSync(file)
    const keys = generateKeyPair(join(dir, 'node'))
    const store = join(dir, 'store')
    const collector = await startCollectorProcess(store, keys.publicKeyFile, tls)
    const checkpoint = join(stateDir, 'checkpoint.json')
    const started = performance.now()
    const agent = startAgent({ dir, logDir, keyFile: keys.keyFile, port: collector.port }, settings)
    let peak = 0
    let cpu = 0
    for (;;) {
      if (agent.exitCode !== null) throw new Error(`the agent exited (${agent.exitCode}) before reading the log`)
      const s = procStats(agent.pid!)
      peak = Math.max(peak, s.peakRssBytes)
      cpu = s.cpuSeconds
      const p = existsSync(checkpoint) ? JSON.parse(readFileSync(checkpoint, 'utf8')).position : undefined
      if (p?.inode === ino && p.offset === log.length) break
      await sleep(20)
    }
    const wallSeconds = (performance.now() - started) / 1000
    agent.kill('SIGTERM')
    await new Promise((res) => (agent.exitCode === null ? agent.once('exit', res) : res(undefined)))
    const idle = await collector.request('idle')
    if (!('idle' in idle)) throw new Error('unexpected answer from the bench\'s collector')
    await collector.request('close').catch(() => {})
    const out = await exportSha({ store })
    return {
      wallSeconds,
      cpuSeconds: cpu,
      peakRssMiB: peak / 1048576,
      collectorCpuSeconds: idle.idle.cpuSeconds - collector.startUsage.cpuSeconds,
      collectorPeakRssMiB: idle.idle.peakRssMiB,
      pushes: idle.idle.pushes,
      exportMatches: out.sha256 === expectedSha && out.lines === lines,
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

interface FluentBitRun { wall_ms: number; cpu_s: number; peak_rss_mib: number; lines: number }

/** A port that was free a moment ago, for run.sh's sink (FB_SINK_PORT): its default, 18080, may be taken. */
async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

async function fluentBitRun(script: string, file: string): Promise<FluentBitRun> {
  const env = { ...process.env, FB_SINK_PORT: String(await freePort()) }
  return new Promise((resolve, reject) => {
    execFile(script, [file], { maxBuffer: 1024 * 1024, env }, (err, stdout) => {
      if (err) return reject(new Error(`${script} ${file}: ${err.message}`))
      const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as FluentBitRun & { error?: string }
      if (r.error) reject(new Error(`${script}: ${r.error}`))
      else resolve(r)
    })
  })
}

/** The real log in a scratch directory (for Fluent Bit), the redaction salt every agent run gets, and the export expected of it. */
function realSource() {
  const real = realLog(REAL_EVENTS)
  const salt = randomBytes(32)
  const scratch = mkdtempSync(join(tmpdir(), 'auditrail-bench-real-src-'))
  const file = join(scratch, 'audit.log')
  writeFileSync(file, real.bytes)
  writeFileSync(join(scratch, 'redaction-salt'), salt, { mode: 0o600 })
  const expected = expectedExport(scratch)
  for (let start = 0, nl = real.bytes.indexOf(0x0a); nl !== -1; start = nl + 1, nl = real.bytes.indexOf(0x0a, start)) expected.add(real.bytes.subarray(start, nl))
  return { real, salt, scratch, file, expectedSha: expected.sha256() }
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length

async function realPhase() {
  const { real, salt, scratch, file, expectedSha } = realSource()
  const fluentBit = process.env.FLUENT_BIT || undefined
  say(`5. real apiserver log: ${real.source} x${real.copies} = ${real.lines} events, ${(real.bytes.length / 1e6).toFixed(0)} MB; ${RUNS} runs${fluentBit ? `, interleaved with Fluent Bit (${fluentBit})` : ' (FLUENT_BIT not set: no Fluent Bit runs)'}`)
  const agentRuns: RealRun[] = []
  const fluentBitRuns: FluentBitRun[] = []
  try {
    for (let i = 0; i < RUNS; i++) {
      const a = await realAgentRun(real.bytes, real.lines, salt, expectedSha)
      agentRuns.push(a)
      say(`   agent:      ${a.wallSeconds.toFixed(1)} s wall, ${a.cpuSeconds.toFixed(1)} CPU s (${((a.cpuSeconds / real.lines) * 1e6).toFixed(0)} µs per event), peak RSS ${a.peakRssMiB.toFixed(0)} MiB; collector ${a.collectorCpuSeconds.toFixed(1)} CPU s with its index (${Math.round(real.lines / a.collectorCpuSeconds)} events per CPU s), peak RSS ${a.collectorPeakRssMiB.toFixed(0)} MiB; export ${a.exportMatches ? 'matches' : 'DIFFERS'}`)
      if (!fluentBit) continue
      const f = await fluentBitRun(fluentBit, file)
      if (f.lines !== real.lines) throw new Error(`Fluent Bit counted ${f.lines} lines, the file has ${real.lines}`)
      fluentBitRuns.push(f)
      say(`   Fluent Bit: ${(f.wall_ms / 1000).toFixed(1)} s wall, ${f.cpu_s.toFixed(1)} CPU s (${((f.cpu_s / real.lines) * 1e6).toFixed(0)} µs per event), peak RSS ${f.peak_rss_mib} MiB`)
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true })
  }
  const agent = {
    eventsPerSecond: real.lines / mean(agentRuns.map((r) => r.wallSeconds)),
    cpuSecondsPerMillionEvents: (mean(agentRuns.map((r) => r.cpuSeconds)) / real.lines) * 1e6,
    peakRssMiB: Math.max(...agentRuns.map((r) => r.peakRssMiB)),
    exportMatches: agentRuns.every((r) => r.exportMatches),
  }
  const collector = { eventsPerCpuSecond: real.lines / mean(agentRuns.map((r) => r.collectorCpuSeconds)), cpuSecondsPerMillionEvents: (mean(agentRuns.map((r) => r.collectorCpuSeconds)) / real.lines) * 1e6 }
  const fb = fluentBitRuns.length === 0 ? undefined : {
    eventsPerSecond: real.lines / (mean(fluentBitRuns.map((r) => r.wall_ms)) / 1000),
    cpuSecondsPerMillionEvents: (mean(fluentBitRuns.map((r) => r.cpu_s)) / real.lines) * 1e6,
    peakRssMiB: Math.max(...fluentBitRuns.map((r) => r.peak_rss_mib)),
  }
  const ratios = fb && { cpuPerEvent: agent.cpuSecondsPerMillionEvents / fb.cpuSecondsPerMillionEvents, peakRss: agent.peakRssMiB / fb.peakRssMiB }
  say(`   agent: ${Math.round(agent.eventsPerSecond)} events/s, ${agent.cpuSecondsPerMillionEvents.toFixed(1)} CPU s per million events, peak RSS ${agent.peakRssMiB.toFixed(0)} MiB, export ${agent.exportMatches ? 'matches the source' : 'DIFFERS from the source'}`)
  say(`   collector ingest (signatures, chain, store, index): ${collector.cpuSecondsPerMillionEvents.toFixed(1)} CPU s per million events (${Math.round(collector.eventsPerCpuSecond)} events per CPU s)`)
  if (fb && ratios) {
    say(`   Fluent Bit: ${Math.round(fb.eventsPerSecond)} events/s, ${fb.cpuSecondsPerMillionEvents.toFixed(1)} CPU s per million events, peak RSS ${fb.peakRssMiB} MiB`)
    say(`   agent / Fluent Bit: CPU per event ${ratios.cpuPerEvent.toFixed(2)}x, peak RSS ${ratios.peakRss.toFixed(2)}x`)
  }
  // The table of issue 14, each figure as the range over the runs.
  const range = (xs: number[], digits: number) => {
    const [lo, hi] = [Math.min(...xs), Math.max(...xs)].map((x) => x.toFixed(digits))
    return lo === hi ? lo! : `${lo}-${hi}`
  }
  const row = (name: string, wallS: number[], cpuS: number[], peakMiB: number[]) =>
    `   | ${name} | ${range(wallS, 1)} s | ${range(cpuS, 1)} s | ${range(cpuS.map((c) => (c / real.lines) * 1e6), 0)} µs | ${range(peakMiB, 0)} MiB |`
  say(`   | ${real.lines} real events, ${(real.bytes.length / 1e6).toFixed(0)} MB | wall | CPU | per event | peak RSS |\n   |---|---|---|---|---|`)
  if (fluentBitRuns.length > 0) say(row('Fluent Bit v5.1.1, tail + json parser -> http json_lines', fluentBitRuns.map((r) => r.wall_ms / 1000), fluentBitRuns.map((r) => r.cpu_s), fluentBitRuns.map((r) => r.peak_rss_mib)))
  say(row('Auditrail agent, defaults, collector on loopback', agentRuns.map((r) => r.wallSeconds), agentRuns.map((r) => r.cpuSeconds), agentRuns.map((r) => r.peakRssMiB)))
  say(`   (the collector: ${range(agentRuns.map((r) => r.collectorCpuSeconds), 1)} CPU s more)`)
  return { source: real.source, copies: real.copies, events: real.lines, megabytes: real.bytes.length / 1e6, runs: { agent: agentRuns, fluentBit: fluentBitRuns }, agent, collector, fluentBit: fb, ratios }
}

// --- 6. HTTP/1.1 against HTTP/2, under TLS as in a cluster

async function http2Phase() {
  const { real, salt, scratch, expectedSha } = realSource()
  const pki = mkdtempSync(join(tmpdir(), 'auditrail-bench-pki-'))
  const modes = ['never', 'auto'] as const
  const runs: Record<(typeof modes)[number], RealRun[]> = { never: [], auto: [] }
  say(`6. HTTP/1.1 (collector.http2: never) against HTTP/2 (auto: h2 by ALPN), TLS on 127.0.0.1: ${real.lines} real events, ${RUNS} runs each, interleaved`)
  try {
    const ca = makeCa(pki, 'ca')
    const server = makeLeaf(pki, 'collector', ca, 'serverAuth')
    for (let i = 0; i < RUNS; i++) {
      for (const mode of modes) {
        const r = await realAgentRun(real.bytes, real.lines, salt, expectedSha, { http2: mode, caFile: ca.certFile }, server)
        runs[mode].push(r)
        say(`   ${mode === 'never' ? 'HTTP/1.1' : 'HTTP/2  '}: ${r.wallSeconds.toFixed(1)} s wall, ${r.cpuSeconds.toFixed(1)} CPU s, peak RSS ${r.peakRssMiB.toFixed(0)} MiB; collector ${r.collectorCpuSeconds.toFixed(1)} CPU s; requests by version ${JSON.stringify(r.pushes)}; export ${r.exportMatches ? 'matches' : 'DIFFERS'}`)
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true })
    rmSync(pki, { recursive: true, force: true })
  }
  const summary = (rs: RealRun[], version: '1.1' | '2') => ({
    eventsPerSecond: real.lines / mean(rs.map((r) => r.wallSeconds)),
    cpuSecondsPerMillionEvents: (mean(rs.map((r) => r.cpuSeconds)) / real.lines) * 1e6,
    peakRssMiB: Math.max(...rs.map((r) => r.peakRssMiB)),
    collectorEventsPerCpuSecond: real.lines / mean(rs.map((r) => r.collectorCpuSeconds)),
    // Every acknowledged request over the version the mode asks for: what was measured is what it says.
    versionAsAsked: rs.every((r) => r.pushes[version] > 0 && r.pushes[version === '2' ? '1.1' : '2'] === 0),
    exportMatches: rs.every((r) => r.exportMatches),
  })
  const h1 = summary(runs.never, '1.1')
  const h2 = summary(runs.auto, '2')
  for (const [name, x] of [['HTTP/1.1', h1], ['HTTP/2', h2]] as const) {
    say(`   ${name}: ${Math.round(x.eventsPerSecond)} events/s, ${x.cpuSecondsPerMillionEvents.toFixed(1)} CPU s per million events, peak RSS ${x.peakRssMiB.toFixed(0)} MiB; collector ${Math.round(x.collectorEventsPerCpuSecond)} events per CPU s; ${x.versionAsAsked ? 'every request over it' : 'NOT every request over it'}`)
  }
  return { events: real.lines, copies: real.copies, source: real.source, runs, http1: h1, http2: h2 }
}

await build(BUILT)
const started = new Date()
const load = loadavg()
say(`auditrail bench (node ${process.version}, ${cpus()[0]?.model ?? 'unknown CPU'} x${cpus().length}; load average ${load.map((l) => l.toFixed(2)).join(' ')}): phases ${[...PHASES].join(', ')}`)
const result: Record<string, unknown> = { date: started.toISOString(), node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, loadAverage: load }
const doc = join(ROOT, 'docs', 'benchmarks.md')
const day = started.toISOString().slice(0, 10)
if (PHASES.has('pipeline')) {
  say(`${EVENTS} events full speed; ${RATE}/s steady for ${STEADY_S}s; collector outage ${OUTAGE_S}s`)
  const full = await fullSpeed()
  say(`1. floor (split + JSON.parse):   ${Math.round(full.floor.eventsPerSecond)} events/s, ${full.floor.mbPerSecond.toFixed(1)} MB/s`)
  say(`2. agent at full speed:          ${Math.round(full.agent.eventsPerSecond)} events/s, ${full.agent.mbPerSecond.toFixed(1)} MB/s (${(full.agent.ratioToFloor * 100).toFixed(0)}% of the floor), ${full.agent.cpuSecondsPerMillionEvents.toFixed(1)} CPU s per million events, peak RSS ${full.agent.peakRssMiB.toFixed(0)} MiB, export ${full.agent.exportMatches ? 'matches' : 'DIFFERS'}`)
  const bare = full.agent.withoutInspection
  say(`   same log, rules and detectors off: ${Math.round(bare.eventsPerSecond)} events/s, ${bare.cpuSecondsPerMillionEvents.toFixed(1)} CPU s per million events, peak RSS ${bare.peakRssMiB.toFixed(0)} MiB: with them on, ${((full.agent.eventsPerSecond / bare.eventsPerSecond) * 100).toFixed(0)}% of that`)
  const steadyRun = await steadyAndOutage()
  const s = steadyRun.steady
  const o = steadyRun.outage
  say(`   idle (in sync, nothing to read, ${steadyRun.idle.seconds} s): RSS ${steadyRun.idle.rssMiB.toFixed(0)} MiB`)
  say(`3. steady ${s.rate}/s:                append-to-ack p50 ${s.p50Ms.toFixed(0)} ms, p99 ${s.p99Ms.toFixed(0)} ms, max ${s.maxMs.toFixed(0)} ms (${s.samples} samples); agent CPU ${s.cpuPercentOfOneCore.toFixed(1)}% of one core; peak RSS ${s.peakRssMiB.toFixed(0)} MiB`)
  say(`4. collector down ${o.seconds}s:          agent peak RSS ${o.peakRssMiB.toFixed(0)} MiB; caught up in ${o.catchUpSeconds.toFixed(1)} s (${o.catchUpRateVsLive.toFixed(1)}x the live rate); export ${o.exportMatches ? 'matches the source: nothing lost' : 'DIFFERS from the source'}`)
  Object.assign(result, full, steadyRun)
  insertBenchmarkRow(doc, 'Pipeline', `| ${day} | ${process.version} | ${result.cpu} x${result.cores} | ${Math.round(full.floor.eventsPerSecond)} | ${Math.round(full.agent.eventsPerSecond)} | ${(full.agent.ratioToFloor * 100).toFixed(0)}% | ${full.agent.cpuSecondsPerMillionEvents.toFixed(1)} | ${full.agent.peakRssMiB.toFixed(0)} MiB | ${s.p50Ms.toFixed(0)} / ${s.p99Ms.toFixed(0)} / ${s.maxMs.toFixed(0)} | ${s.cpuPercentOfOneCore.toFixed(1)} | ${o.peakRssMiB.toFixed(0)} MiB | ${o.catchUpRateVsLive.toFixed(1)} | ${full.agent.exportMatches && o.exportMatches ? 'yes' : 'NO'} | ${Math.round(bare.eventsPerSecond)} (${((full.agent.eventsPerSecond / bare.eventsPerSecond) * 100).toFixed(0)}%) | ${steadyRun.idle.rssMiB.toFixed(0)} MiB |`)
}
if (PHASES.has('real')) {
  const real = await realPhase()
  result.real = real
  const a = real.agent
  const fb = real.fluentBit
  const source = real.source === SHARED_REAL ? 'all-lines (shared)' : 'sample (project)'
  insertBenchmarkRow(doc, 'Real apiserver log', `| ${started.toISOString().slice(0, 16).replace('T', ' ')} | ${process.version} | ${result.cpu} x${result.cores} | ${load[0]!.toFixed(2)} | ${source} × ${real.copies} = ${real.events} | ${real.runs.agent.length} / ${real.runs.fluentBit.length} | ${Math.round(a.eventsPerSecond)} | ${a.cpuSecondsPerMillionEvents.toFixed(1)} | ${a.peakRssMiB.toFixed(0)} MiB | ${Math.round(real.collector.eventsPerCpuSecond)} | ${fb ? `${Math.round(fb.eventsPerSecond)} | ${fb.cpuSecondsPerMillionEvents.toFixed(1)} | ${fb.peakRssMiB} MiB | ${real.ratios!.cpuPerEvent.toFixed(2)} | ${real.ratios!.peakRss.toFixed(2)}` : '- | - | - | - | -'} | ${a.exportMatches ? 'yes' : 'NO'} |`)
}
if (PHASES.has('http2')) {
  const h = await http2Phase()
  result.http2 = h
  const cell = (x: typeof h.http1) => `${Math.round(x.eventsPerSecond)} | ${x.cpuSecondsPerMillionEvents.toFixed(1)} | ${x.peakRssMiB.toFixed(0)} MiB | ${Math.round(x.collectorEventsPerCpuSecond)}`
  insertBenchmarkRow(doc, 'HTTP/2 to the collector', `| ${started.toISOString().slice(0, 16).replace('T', ' ')} | ${process.version} | ${result.cpu} x${result.cores} | ${load[0]!.toFixed(2)} | ${h.events} | ${RUNS} | ${cell(h.http1)} | ${cell(h.http2)} | ${h.http1.versionAsAsked && h.http2.versionAsAsked ? 'yes' : 'NO'} | ${h.http1.exportMatches && h.http2.exportMatches ? 'yes' : 'NO'} |`)
}
mkdirSync(join(ROOT, 'bench-out'), { recursive: true })
const jsonFile = join(ROOT, 'bench-out', `bench-${started.toISOString().replace(/[:.]/g, '-')}.json`)
writeFileSync(jsonFile, `${JSON.stringify(result, null, 2)}\n`)
say(`figures: ${jsonFile}; a row per phase added to docs/benchmarks.md`)
