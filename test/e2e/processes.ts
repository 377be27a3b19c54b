// End-to-end tests run the real binary: the collector and the agent as child
// processes on 127.0.0.1, which the tests can kill with SIGKILL and restart.
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '../../agent/keygen.ts'
import { AGENT_ENV, AGENT_NODE_FLAGS } from '../../agent/process-settings.ts'
import type { Test } from 'tap'
import { eventKey, expectedExportSha256, exportDifference } from './audit-source.ts'

export const MAIN = fileURLToPath(new URL('../../programs/main.ts', import.meta.url))

export interface Running {
  child: ChildProcess
  /** Everything the process wrote to stderr (its JSON logs). */
  logs(): string
  exited: Promise<number | null>
}

/**
 * Children still running when this test process ends: tap ends a file that runs past its timeout
 * with SIGTERM, and no teardown runs then, so they are killed here rather than left running.
 */
const living = new Set<ChildProcess>()
let reaping = false
function reapOnExit(): void {
  if (reaping) return
  reaping = true
  process.once('exit', () => {
    for (const child of living) child.kill('SIGKILL')
  })
  process.once('SIGTERM', () => process.exit(143))
}

/** The CLI as the image runs it (its ENTRYPOINT and ENV: node with the agent's V8 flags and environment). */
export function startProcess(args: string[], env: NodeJS.ProcessEnv = {}): Running {
  const child = spawn(process.execPath, [...AGENT_NODE_FLAGS, MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...AGENT_ENV, ...env } })
  reapOnExit()
  living.add(child)
  child.once('exit', () => living.delete(child))
  let logs = ''
  child.stderr!.on('data', (d: Buffer) => {
    logs += d.toString()
    if (logs.length > 4_000_000) logs = logs.slice(-2_000_000)
  })
  child.stdout!.resume()
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, logs: () => logs, exited }
}

export async function stopProcess(p: Running, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return
  p.child.kill(signal)
  await p.exited
}

/** A port that was free a moment ago: the collector restarts on the same one, so the agent's URL holds. */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, everyMs))
  }
}

/**
 * A node's key pair (DIR/node.*) and a collector process trusting it, on a free port, storing in
 * DIR/store. start() runs it (again after a kill: same port, same store, so the agent's URL holds);
 * ready() waits for its /livez.
 */
export async function collectorRig(dir: string) {
  const { keyFile, publicKeyFile } = generateKeyPair(join(dir, 'node'))
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const store = join(dir, 'store')
  return {
    keyFile,
    publicKeyFile,
    port,
    url,
    store,
    start: () => startProcess(['collector', '--listen', `127.0.0.1:${port}`, '--store', store, '--trust', publicKeyFile]),
    ready: () => waitFor('the collector', async () => (await fetch(`${url}/livez`).catch(() => undefined))?.ok === true),
  }
}

/** Runs the CLI to completion. */
export function runCli(args: string[], maxBuffer = 1024 * 1024 * 1024): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { encoding: 'buffer', maxBuffer }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr: stderr.toString() })
    })
  })
}

/**
 * True once the agent's checkpoint stands at the end of the live file: same
 * inode and same first bytes (inodes of deleted backups are reused), same size.
 */
export function caughtUp(stateDir: string, logPath: string): boolean {
  try {
    const p = JSON.parse(readFileSync(join(stateDir, 'checkpoint.json'), 'utf8')).position
    const st = statSync(logPath)
    if (!p || p.inode !== st.ino || p.offset !== st.size) return false
    const head = Buffer.alloc(p.fingerprintLength)
    const fd = openSync(logPath, 'r')
    try {
      readSync(fd, head, 0, head.length, 0)
    } finally {
      closeSync(fd)
    }
    return createHash('sha256').update(head).digest('hex') === p.fingerprint
  } catch {
    return false
  }
}

export interface ExportDigest {
  code: number
  stderr: string
  /** Event lines (notes excluded). */
  lines: number
  /** SHA-256 of the event lines with their newlines, notes excluded. */
  sha256: string
  /** The `#auditrail {...}` note lines, parsed, but for findings (counted by id: a long log holds hundreds of thousands). */
  notes: Array<{ kind: string; [key: string]: unknown }>
  findings: Map<string, number>
  /** How many times each event (auditID and stage) came out: tells a test which went missing or came twice. */
  events: Map<string, number>
}

/** Runs `auditrail export --records` and digests its output as it streams: hundreds of MB never sit in memory. */
export function exportDigest(store: string): Promise<ExportDigest> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, 'export', store, '--records'], { stdio: ['ignore', 'pipe', 'pipe'] })
    const hash = createHash('sha256')
    const notes: ExportDigest['notes'] = []
    const findings = new Map<string, number>()
    const events = new Map<string, number>()
    let lines = 0
    let carry = Buffer.alloc(0)
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.stdout.on('data', (chunk: Buffer) => {
      const data = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk
      let start = 0
      for (let nl = data.indexOf(10); nl !== -1; nl = data.indexOf(10, start)) {
        const line = data.subarray(start, nl + 1)
        if (line.subarray(0, 11).toString() === '#auditrail ') {
          const note = JSON.parse(line.subarray(11).toString()) as ExportDigest['notes'][number]
          if (note.kind === 'finding') findings.set(`${note.source}:${note.id}`, (findings.get(`${note.source}:${note.id}`) ?? 0) + 1)
          else notes.push(note)
        } else {
          hash.update(line)
          lines++
          const key = eventKey(line.subarray(0, 512).toString('latin1'))
          events.set(key, (events.get(key) ?? 0) + 1)
        }
        start = nl + 1
      }
      carry = Buffer.from(data.subarray(start))
    })
    child.on('close', (code) => resolve({ code: code ?? 1, stderr, lines, sha256: hash.digest('hex'), notes, findings, events }))
  })
}

/**
 * The store holds exactly the source: every event once, byte for byte in order (secret values redacted
 * with the node's salt from `stateDir`), nothing declared lost, and `auditrail verify` passes. Returns
 * the export for the caller's own checks.
 */
export async function checkStoreHoldsSource(t: Test, store: string, lines: string[], stateDir: string, publicKeyFile: string): Promise<ExportDigest> {
  const exported = await exportDigest(store)
  t.equal(exported.code, 0, exported.stderr)
  t.equal(exportDifference(exported.events, lines), '', 'every event exactly once')
  t.equal(exported.lines, lines.length, 'as many lines as the source')
  t.equal(exported.sha256, expectedExportSha256(lines, stateDir), 'byte for byte, in order (secret values redacted)')
  t.same(exported.notes.filter((n) => n.kind === 'gap' || n.kind === 'quarantine' || n.kind === 'unparsed'), [], 'no gap, quarantine or unparsed record: nothing declared lost')
  const verified = await runCli(['verify', store, '--trust', publicKeyFile])
  t.equal(verified.code, 0, verified.stdout.toString() + verified.stderr)
  return exported
}
