// Property-based fuzzing (fast-check) of the places where hostile bytes enter:
// the wire codec, the collector's Connect handler, the agent's config loader,
// the rule and detector loaders. The targets are the fuzz tests themselves: in
// `npm test` each runs a fixed number of cases with a fixed seed (a failure
// replays); here each runs for a time instead, and the executions are counted.
//
//   npm run fuzz -- [--seconds N] [--target NAME]... [--seed S]
//
// Environment of the tests: FUZZ_SEED (default 20261125) and FUZZ_SECONDS (set:
// run every property for that long, split among the file's properties).
//
// The helpers below are shared by the fuzz tests.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

export const DEFAULT_SEED = 20261125

/** Seed and time of this run, from FUZZ_SEED and FUZZ_SECONDS. */
export function fuzzSettings(): { seed: number; seconds: number | undefined } {
  const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : DEFAULT_SEED
  if (!Number.isSafeInteger(seed)) throw new Error(`FUZZ_SEED must be an integer, got ${process.env.FUZZ_SEED}`)
  const seconds = process.env.FUZZ_SECONDS ? Number(process.env.FUZZ_SECONDS) : undefined
  if (seconds !== undefined && !(seconds > 0)) throw new Error(`FUZZ_SECONDS must be a positive number, got ${process.env.FUZZ_SECONDS}`)
  return { seed, seconds }
}

/**
 * fast-check parameters of one property: `ciRuns` cases by default (with a time
 * limit as a safety net, `ciSeconds`), or as many as fit in `share` of
 * FUZZ_SECONDS when it is set.
 */
export function fuzzParameters(ciRuns: number, ciSeconds: number, share = 1): { seed: number; numRuns: number; interruptAfterTimeLimit: number; endOnFailure: boolean } {
  const { seed, seconds } = fuzzSettings()
  return seconds === undefined
    ? { seed, numRuns: ciRuns, interruptAfterTimeLimit: ciSeconds * 1000, endOnFailure: true }
    : { seed, numRuns: 2 ** 31 - 1, interruptAfterTimeLimit: seconds * share * 1000, endOnFailure: true }
}

/** The line scripts/fuzz.ts reads: `# fuzz TARGET/PROPERTY: N executions in S s (seed X)`. */
export function executionsLine(target: string, executions: number, ms: number): string {
  return `fuzz ${target}: ${executions} executions in ${(ms / 1000).toFixed(1)} s (seed ${fuzzSettings().seed})`
}

/**
 * Exceptions a target must not throw, grouped by kind (name, message shape and
 * the first frame of the stack), each with its smallest input seen. A known
 * kind (a bug reported and not yet fixed) is matched by `known` and reported
 * as a todo instead of a failure.
 */
export class Surprises {
  readonly #kinds = new Map<string, { count: number; error: Error; input: string }>()

  record(err: unknown, input: unknown): void {
    const error = err instanceof Error ? err : new Error(`non-Error thrown: ${String(err)}`)
    const frame = (error.stack ?? '').split('\n').find((l) => l.trim().startsWith('at ')) ?? ''
    const kind = `${error.name}: ${error.message.replace(/\d+/g, 'N').slice(0, 120)} ${frame.trim()}`
    const shown = describe(input)
    const seen = this.#kinds.get(kind)
    if (!seen) this.#kinds.set(kind, { count: 1, error, input: shown })
    else {
      seen.count++
      if (shown.length < seen.input.length) seen.input = shown
    }
  }

  get size(): number {
    return this.#kinds.size
  }

  /** One entry per kind: known ones carry the reason given for them. */
  entries(known: ReadonlyArray<{ match: RegExp; reason: string }> = []): Array<{ kind: string; count: number; input: string; stack: string; todo: string | undefined }> {
    return [...this.#kinds].map(([kind, s]) => ({
      kind,
      count: s.count,
      input: s.input,
      stack: (s.error.stack ?? '').split('\n').slice(0, 6).join('\n'),
      todo: known.find((k) => k.match.test(kind) || k.match.test(s.error.stack ?? ''))?.reason,
    }))
  }
}

/** A short printable form of a fuzz input. */
export function describe(input: unknown): string {
  const s = input instanceof Uint8Array
    ? `hex:${Buffer.from(input).toString('hex')}`
    : typeof input === 'string' ? JSON.stringify(input) : safeJson(input)
  return s.length > 600 ? `${s.slice(0, 600)}… (${s.length} chars)` : s
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x instanceof Uint8Array ? `hex:${Buffer.from(x).toString('hex')}` : x)) ?? String(v)
  } catch {
    return String(v)
  }
}

// --- the script

export const TARGETS: Readonly<Record<string, string>> = {
  wire: 'test/proto/wire-fuzz.test.ts',
  server: 'test/collector/server-fuzz.test.ts',
  config: 'test/agent/config-fuzz.test.ts',
  definition: 'test/agent/guard/definition-fuzz.test.ts',
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '60' },
      target: { type: 'string', multiple: true },
      seed: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  if (values.help) {
    console.log(`usage: npm run fuzz -- [--seconds N] [--target ${Object.keys(TARGETS).join('|')}]... [--seed S]\nRuns each target for N seconds (default 60) and prints its executions.`)
    return
  }
  const seconds = Number(values.seconds)
  if (!(seconds > 0)) throw new Error(`--seconds must be a positive number, got ${values.seconds}`)
  const names = values.target ?? Object.keys(TARGETS)
  for (const n of names) if (!Object.hasOwn(TARGETS, n)) throw new Error(`unknown target ${n}; targets: ${Object.keys(TARGETS).join(', ')}`)
  const seed = values.seed ?? process.env.FUZZ_SEED ?? String(Date.now() % 2 ** 31)
  const root = fileURLToPath(new URL('../', import.meta.url))
  const summary: Array<{ target: string; executions: number; ok: boolean }> = []
  console.log(`fuzzing ${names.join(', ')} for ${seconds} s each, seed ${seed} (replay with FUZZ_SEED=${seed})`)
  for (const name of names) {
    const started = performance.now()
    const { code, output } = await run(process.execPath, [TARGETS[name]!], root, { ...process.env, FUZZ_SEED: seed, FUZZ_SECONDS: String(seconds), TAP_TIMEOUT: '0' })
    const lines = output.split('\n')
    let executions = 0
    for (const l of lines) {
      const m = /# fuzz (\S+): (\d+) executions in ([\d.]+) s/.exec(l)
      if (m) {
        executions += Number(m[2])
        console.log(`  ${m[1]!.padEnd(40)} ${m[2]!.padStart(10)} executions in ${m[3]} s`)
      }
    }
    // Failures and todos, as tap printed them.
    for (const l of lines) if (/^\s*not ok |# TODO/.test(l)) console.log(`  ${l.trim()}`)
    const ok = code === 0
    summary.push({ target: name, executions, ok })
    console.log(`${name}: ${executions} executions in ${((performance.now() - started) / 1000).toFixed(1)} s, ${ok ? 'passed' : `FAILED (exit ${code}); replay: FUZZ_SEED=${seed} FUZZ_SECONDS=${seconds} node ${TARGETS[name]}`}`)
  }
  console.log('\ntarget       executions  result')
  for (const s of summary) console.log(`${s.target.padEnd(12)} ${String(s.executions).padStart(10)}  ${s.ok ? 'ok' : 'FAILED'}`)
  if (summary.some((s) => !s.ok)) process.exitCode = 1
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (d: Buffer) => { output += d.toString() })
    child.stderr.on('data', (d: Buffer) => { output += d.toString() })
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, output }))
  })
}

if (import.meta.main) await main()
