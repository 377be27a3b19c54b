// The anomaly stage of the pipeline: sliding-window detectors over event time.
//
// Time is the events' own (stageTimestamp; the clock is the newest seen), so
// a backlog replayed after an outage gives the findings live reading gave,
// and a replay of the same file gives the same findings every time. State is
// bounded per detector: keys live in an LRU cache with a maximum size and a
// time to live on that same event clock; evicted keys are counted.
import { fileURLToPath } from 'node:url'
import { LRUCache } from 'lru-cache'
import type { AuditEvent } from '../audit/event.ts'
import { CelBudgetExceeded } from '../guard/cel.ts'
import { loadDefinitions } from '../guard/definition-files.ts'
import { matchesEvent } from '../guard/event-filter.ts'
import type { RuleFinding } from '../guard/rule-set.ts'
import type { AgentMetrics } from '../observe/metrics.ts'
import { compileDetector, KEY_FIELDS, type Detector } from './detector.ts'
import type { GroupSpec } from '../guard/finding-groups.ts'
import { SlidingWindowCount } from './sliding-window.ts'

export const BUILTIN_DETECTORS_DIR = fileURLToPath(new URL('./builtin-detectors/', import.meta.url))
/** Distinct values remembered per key by a first-seen detector. */
const MAX_VALUES_PER_KEY = 64
/** At most this many empty windows are folded into a baseline after a pause. */
const MAX_EMPTY_WINDOWS = 100
const EWMA_ALPHA = 0.1
const DAY_MS = 24 * 3_600_000
const STAGES_THAT_ANSWER = new Set(['ResponseStarted', 'ResponseComplete', 'Panic'])

export type DetectorFinding = RuleFinding

/** The detectors of the directories, later ones replacing earlier ones by id (see loadDefinitions). */
export function loadDetectors(dirs: readonly string[]): Detector[] {
  return loadDefinitions(dirs, 'detector', compileDetector)
}

interface KeyState {
  coolUntil: number
}
interface ThresholdState {
  window: SlidingWindowCount
  /** From the crossing of the threshold until a window passes without a matching event: how big it became. */
  burst: { fromMs: number; lastMs: number; total: number; peak: number } | undefined
}
interface BaselineState extends KeyState {
  windowIndex: number
  count: number
  mean: number
  variance: number
  windows: number
}
interface FirstSeenState extends KeyState {
  firstMs: number
  values: Set<string>
}
type KeyStateOf = ThresholdState | BaselineState | FirstSeenState | PendingRequest
interface PendingRequest {
  timeMs: number
  user: string
  verb: string
  uri: string
}

/** One detector and its bounded state. */
class RunningDetector {
  readonly def: Detector
  readonly keys: LRUCache<string, KeyStateOf>
  evictions = 0
  /** silence: event time of the previous event. */
  lastEventMs = -1

  constructor(def: Detector, clock: { now(): number }) {
    this.def = def
    const t = def.trigger
    const ttl = t.kind === 'threshold' ? def.windowMs + def.coolDownMs : t.kind === 'baseline' ? Math.max(DAY_MS, def.windowMs * 4 * t.warmupWindows) : t.kind === 'firstSeen' ? 7 * DAY_MS : 0
    this.keys = new LRUCache<string, KeyStateOf>({
      max: def.maxKeys,
      ...(ttl > 0 ? { ttl, updateAgeOnGet: true, ttlResolution: 0, perf: clock } : {}),
      dispose: (_v, _k, reason) => {
        if (reason === 'evict') this.evictions++
      },
    })
  }

  keyOf(event: AuditEvent): string {
    return this.def.key.map((k) => `${k}=${KEY_FIELDS[k]!(event) ?? '<none>'}`).join(',')
  }
}

export interface DetectorsOptions {
  builtin: boolean
  dirs: readonly string[]
  metrics?: AgentMetrics
}

export class Detectors {
  readonly #running: RunningDetector[]
  readonly #metrics: AgentMetrics | undefined
  /** Event time: the newest stageTimestamp seen. It only moves forward. */
  #clockMs = 0
  readonly #clock = { now: () => this.#clockMs }
  #lastSweepMs = 0

  /** Throws an AggregateError of DefinitionErrors when a definition is bad. */
  constructor(options: DetectorsOptions) {
    const defs = loadDetectors([...(options.builtin ? [BUILTIN_DETECTORS_DIR] : []), ...options.dirs])
    this.#running = defs.map((d) => new RunningDetector(d, this.#clock))
    this.#metrics = options.metrics
  }

  /** How the findings of detector `id` group (undefined: no such detector). */
  groupOf(id: string): GroupSpec | undefined {
    return this.#running.find((r) => r.def.id === id)?.def.group
  }

  get detectors(): readonly Detector[] {
    return this.#running.map((r) => r.def)
  }

  /** Keys held per detector id (bounded by each detector's maxKeys). */
  keysHeld(): Map<string, number> {
    return new Map(this.#running.map((r) => [r.def.id, r.keys.size]))
  }

  evictions(): Map<string, number> {
    return new Map(this.#running.map((r) => [r.def.id, r.evictions]))
  }

  /** `timeMs`: the event's time when the caller has it already (eventTimeMs). */
  inspect(event: AuditEvent, out: DetectorFinding[], timeMs: number | undefined = eventTimeMs(event)): void {
    if (timeMs === undefined) return
    if (timeMs > this.#clockMs) this.#clockMs = timeMs
    for (const d of this.#running) {
      const t = d.def.trigger
      if (t.kind === 'silence') {
        this.#silence(d, t.afterMs, event, timeMs, out)
        continue
      }
      if (t.kind === 'unanswered' && STAGES_THAT_ANSWER.has(event.stage)) {
        d.keys.delete(event.auditID)
        continue
      }
      if (!matchesEvent(d.def.match, event)) continue
      if (d.def.filter && !filterMatches(d.def.filter, event)) continue
      if (d.def.exceptions.length > 0 && d.def.exceptions.some((e) => e(event))) continue
      switch (t.kind) {
        case 'threshold':
          this.#threshold(d, t.count, event, timeMs, out)
          break
        case 'baseline':
          this.#baseline(d, t, event, timeMs, out)
          break
        case 'firstSeen':
          this.#firstSeen(d, t.field, t.learningMs, event, timeMs, out)
          break
        case 'unanswered':
          if (event.stage === 'RequestReceived') d.keys.set(event.auditID, { timeMs, user: String(event.user?.username ?? '<none>'), verb: event.verb, uri: String(event.requestURI ?? '') })
          break
      }
    }
    if (this.#clockMs - this.#lastSweepMs >= 1000) this.#sweep(event, out)
  }

  /**
   * Every event past the threshold is a finding of the burst (they group into one by key), and says how
   * big the burst has become: its events since the window it crossed in, first and last time, peak per
   * window. So the group's last finding, which its end carries, gives the burst's extent.
   */
  #threshold(d: RunningDetector, threshold: number, event: AuditEvent, timeMs: number, out: DetectorFinding[]): void {
    const key = d.keyOf(event)
    let s = d.keys.get(key) as ThresholdState | undefined
    if (!s) d.keys.set(key, (s = { window: new SlidingWindowCount(d.def.windowMs), burst: undefined }))
    const count = s.window.add(timeMs)
    if (count < 0) return
    const windowMs = d.def.windowMs
    let b = s.burst
    if (b && timeMs - b.lastMs > windowMs) b = s.burst = undefined // a quiet window ended it
    if (b) {
      b.total++
      if (timeMs > b.lastMs) b.lastMs = timeMs
      if (count > b.peak) b.peak = count
    }
    if (count <= threshold) return
    if (!b) b = s.burst = { fromMs: s.window.oldestMs() ?? timeMs, lastMs: timeMs, total: count, peak: count }
    const extent = b.total > count ? `; the burst so far: ${b.total} events from ${new Date(b.fromMs).toISOString()} to ${new Date(b.lastMs).toISOString()}, at most ${b.peak} in ${seconds(windowMs)}` : ''
    out.push(finding(d.def, event, `${count} events in ${seconds(windowMs)} for ${key}, more than the threshold of ${threshold}${extent}: ${d.def.title}`, {
      count: String(count), threshold: String(threshold), window: seconds(windowMs), key,
      burstCount: String(b.total), burstFirstSeen: new Date(b.fromMs).toISOString(), burstLastSeen: new Date(b.lastMs).toISOString(), burstPeak: String(b.peak),
    }))
  }

  #baseline(d: RunningDetector, t: Extract<Detector['trigger'], { kind: 'baseline' }>, event: AuditEvent, timeMs: number, out: DetectorFinding[]): void {
    const key = d.keyOf(event)
    const windowIndex = Math.floor(timeMs / d.def.windowMs)
    let s = d.keys.get(key) as BaselineState | undefined
    if (!s) d.keys.set(key, (s = { windowIndex, count: 0, mean: 0, variance: 0, windows: 0, coolUntil: 0 }))
    if (windowIndex > s.windowIndex) {
      // Fold the finished window, then the empty ones since, into the key's history.
      fold(s, s.count)
      for (let i = Math.min(windowIndex - s.windowIndex - 1, MAX_EMPTY_WINDOWS); i > 0; i--) fold(s, 0)
      s.windowIndex = windowIndex
      s.count = 0
    }
    s.count++
    if (s.windows < t.warmupWindows || s.count < t.minCount || timeMs < s.coolUntil) return
    const stddev = Math.sqrt(s.variance)
    if (s.count <= s.mean + t.sigmas * stddev || s.count <= t.factor * s.mean) return
    s.coolUntil = timeMs + d.def.coolDownMs
    out.push(finding(d.def, event, `${s.count} events in ${seconds(d.def.windowMs)} for ${key}, against a baseline of ${s.mean.toFixed(1)} ± ${stddev.toFixed(1)} per window: ${d.def.title}`, {
      count: String(s.count), baselineMean: s.mean.toFixed(2), baselineStddev: stddev.toFixed(2), window: seconds(d.def.windowMs), key,
    }))
  }

  #firstSeen(d: RunningDetector, field: string, learningMs: number, event: AuditEvent, timeMs: number, out: DetectorFinding[]): void {
    const value = KEY_FIELDS[field]!(event)
    if (typeof value !== 'string') return
    const key = d.keyOf(event)
    let s = d.keys.get(key) as FirstSeenState | undefined
    if (!s) d.keys.set(key, (s = { firstMs: timeMs, values: new Set(), coolUntil: 0 }))
    if (s.values.has(value)) return
    if (s.values.size >= MAX_VALUES_PER_KEY) s.values.delete(s.values.values().next().value!)
    s.values.add(value)
    if (timeMs - s.firstMs < learningMs || timeMs < s.coolUntil) return
    s.coolUntil = timeMs + d.def.coolDownMs
    out.push(finding(d.def, event, `${key} used ${field} ${value} for the first time (known since ${new Date(s.firstMs).toISOString()}): ${d.def.title}`, {
      key, field, value: value.slice(0, 256), knownValues: String(s.values.size - 1), knownSince: new Date(s.firstMs).toISOString(),
    }))
  }

  #silence(d: RunningDetector, afterMs: number, event: AuditEvent, timeMs: number, out: DetectorFinding[]): void {
    const previous = d.lastEventMs
    if (timeMs > previous) d.lastEventMs = timeMs
    if (previous < 0 || timeMs - previous <= afterMs) return
    out.push(finding(d.def, event, `no audit event for ${seconds(timeMs - previous)} before this one (more than ${seconds(afterMs)}): ${d.def.title}`, {
      silentSeconds: String(Math.round((timeMs - previous) / 1000)), previousEventTime: new Date(previous).toISOString(), after: seconds(afterMs),
    }))
  }

  /** Requests left unanswered past their time limit become findings; gauges are refreshed. */
  #sweep(event: AuditEvent, out: DetectorFinding[]): void {
    this.#lastSweepMs = this.#clockMs
    for (const d of this.#running) {
      const t = d.def.trigger
      if (t.kind === 'unanswered') {
        // Entries are only ever set, never read, so the cache's oldest is the earliest request.
        const expired: [string, PendingRequest][] = []
        for (const [auditID, value] of d.keys.rentries() as Generator<[string, KeyStateOf]>) {
          const p = value as PendingRequest
          if (p.timeMs + t.timeoutMs > this.#clockMs) break
          expired.push([auditID, p])
        }
        for (const [auditID, p] of expired) {
          d.keys.delete(auditID)
          out.push({ ...finding(d.def, event, `${p.user} did ${p.verb} ${p.uri} at ${new Date(p.timeMs).toISOString()} and no response was logged within ${seconds(t.timeoutMs)}: ${d.def.title}`, {
            requestReceivedAt: new Date(p.timeMs).toISOString(), user: p.user, verb: p.verb, requestURI: p.uri.slice(0, 256), waited: seconds(this.#clockMs - p.timeMs), detectedBy: event.auditID,
          }), auditId: auditID })
        }
      }
      this.#metrics?.detectorKeys.set({ detector: d.def.id }, d.keys.size)
      const evicted = d.evictions
      if (evicted > 0) {
        this.#metrics?.detectorEvictions.inc({ detector: d.def.id }, evicted)
        d.evictions = 0
      }
    }
  }
}

function fold(s: BaselineState, x: number): void {
  const diff = x - s.mean
  s.mean += EWMA_ALPHA * diff
  s.variance = (1 - EWMA_ALPHA) * (s.variance + EWMA_ALPHA * diff * diff)
  s.windows++
}

function finding(def: Detector, event: AuditEvent, message: string, details: Record<string, string>): DetectorFinding {
  const base: Record<string, string> = { title: def.title }
  if (def.mitre.length > 0) base.mitre = def.mitre.join(',')
  return { source: 'detector', id: def.id, severity: def.severity, message: message.length > 1024 ? `${message.slice(0, 1023)}…` : message, auditId: event.auditID, details: { ...base, ...details } }
}

/** An event too costly to filter counts (fails closed), as for rules. */
function filterMatches(filter: (event: AuditEvent) => boolean, event: AuditEvent): boolean {
  try {
    return filter(event)
  } catch (err) {
    if (err instanceof CelBudgetExceeded) return true
    throw err
  }
}

function seconds(ms: number): string {
  return ms % 60_000 === 0 && ms >= 60_000 ? `${ms / 60_000}m` : `${Math.round(ms / 100) / 10}s`
}

/** stageTimestamp, else requestReceivedTimestamp (and the legacy `timestamp` of old events); undefined when none parses. */
export function eventTimeMs(event: AuditEvent): number | undefined {
  for (const v of [event.stageTimestamp, event.requestReceivedTimestamp, (event as { timestamp?: unknown }).timestamp]) {
    if (typeof v !== 'string') continue
    const ms = Date.parse(v)
    if (Number.isFinite(ms)) return ms
  }
  return undefined
}
