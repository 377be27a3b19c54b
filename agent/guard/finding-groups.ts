// Findings grouped into incidents, as Panther groups alerts (a dedup key, a
// dedup period, a threshold) and GuardDuty counts a finding up instead of
// raising a new one. Every matched event keeps its own finding (it travels in
// the sealed batch of its event, tagged with its group's id in `details`);
// what people read and get alerted on is the group.
//
//   group:                          optional on a rule or detector
//     by: [user, namespace]         fields, or a CEL expression whose text is the key;
//                                   the rule or detector id is always part of the key
//     window: 1h                    a group lasts this long from its first event (event time);
//                                   the next event after it opens a new group
//     quiet: 60s                    instead of window: a group ends when no event has joined it for this long
//     threshold: 5                  rules only: the group becomes a finding at its 5th event
//
// Defaults: a rule groups by user, namespace and object for 1h; a detector by its
// own key for its coolDown, a threshold detector until its window goes quiet (a
// burst is one group however long it lasts). State is bounded: the least recently grown group goes
// first, and is counted.
import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { AuditEvent } from '../audit/event.ts'
import { CelCompileError, compileText } from './cel.ts'
import { duration, MAX_TEXT_LENGTH, stringList } from './event-filter.ts'
import type { RuleFinding } from './rule-set.ts'

/** The audit IDs a group keeps of its events: the first ones (the rest are in the sealed batches, tagged with the group id). */
export const MAX_GROUP_AUDIT_IDS = 100
export const DEFAULT_MAX_GROUPS = 10_000
const DEFAULT_RULE_WINDOW_MS = 3_600_000
/** Longest text a group keeps of one event field (key parts, the first event's fields). */
const MAX_KEY_PART = 256
const MAX_THRESHOLD = 1_000_000
const SWEEP_INTERVAL_MS = 1000

/** What a group key may be made of. `key` is a detector's own key (details.key), `object` resource[/subresource]/name. */
const BY_FIELDS: Record<string, (ev: AuditEvent, f: RuleFinding) => unknown> = {
  user: (ev) => ev.user?.username,
  group: (ev) => ev.user?.groups?.[0],
  sourceIP: (ev) => ev.sourceIPs?.[0],
  userAgent: (ev) => ev.userAgent,
  verb: (ev) => ev.verb,
  namespace: (ev) => ev.objectRef?.namespace,
  resource: (ev) => ev.objectRef?.resource,
  name: (ev) => ev.objectRef?.name,
  object: (ev) => {
    const ref = ev.objectRef
    if (ref?.resource === undefined && ref?.name === undefined) return undefined
    return `${ref.resource ?? ''}${ref.subresource ? `/${ref.subresource}` : ''}/${ref.name ?? ''}`
  },
  code: (ev) => ev.responseStatus?.code,
  key: (_ev, f) => f.details.key,
}
const DEFAULT_RULE_BY = ['user', 'namespace', 'object']

export interface GroupSpec {
  /** The key of an event's finding within its rule or detector. */
  keyOf: (event: AuditEvent, finding: RuleFinding) => string
  /** How the key is made, for people: field names or the CEL text. */
  by: string
  windowMs: number
  /** The window counts from the group's latest event, not its first. */
  quiet: boolean
  threshold: number
}

/** Parses `group` of a rule (threshold allowed) or a detector (default key: its own; `defaults`: its window or quiet time). */
export function compileGroup(raw: unknown, kind: 'rule' | 'detector', defaults: { windowMs: number; quiet: boolean } | undefined, fail: (message: string) => never): GroupSpec {
  if (raw === undefined) raw = {}
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail('group: expected a mapping of by, window or quiet' + (kind === 'rule' ? ', threshold' : ''))
  const g = raw as Record<string, unknown>
  const keys = kind === 'rule' ? ['by', 'window', 'quiet', 'threshold'] : ['by', 'window', 'quiet']
  for (const k of Object.keys(g)) if (!keys.includes(k)) fail(`group: unknown field ${JSON.stringify(k)}; group has ${keys.join(', ')}${k === 'threshold' ? ' (a detector has its trigger)' : ''}`)
  let keyOf: GroupSpec['keyOf']
  let by: string
  if (typeof g.by === 'string') {
    if (g.by.trim() === '' || g.by.length > MAX_TEXT_LENGTH) return fail(`group.by: expected a list of fields or a CEL expression of at most ${MAX_TEXT_LENGTH} characters`)
    let text
    try {
      text = compileText(g.by)
    } catch (err) {
      if (err instanceof CelCompileError) return fail(`group.by: ${err.message} (line ${err.line}, column ${err.column} of the expression)`)
      throw err
    }
    keyOf = (ev) => part(text(ev))
    by = g.by
  } else {
    const fields = stringList(g.by, 'group.by', fail) ?? (kind === 'rule' ? DEFAULT_RULE_BY : ['key'])
    if (fields.length === 0) fail('group.by: name at least one field (or a CEL expression)')
    for (const f of fields) if (!Object.hasOwn(BY_FIELDS, f)) fail(`group.by: ${JSON.stringify(f)} is not a field; use ${Object.keys(BY_FIELDS).join(', ')}, or a CEL expression`)
    const getters = fields.map((f) => BY_FIELDS[f]!)
    keyOf = (ev, finding) => getters.map((get) => part(get(ev, finding))).join('\u0000')
    by = fields.join(', ')
  }
  if (g.window !== undefined && g.quiet !== undefined) fail('group: window or quiet, not both (a group ends a window after its first event, or a quiet time after its latest)')
  const windowMs = g.window !== undefined ? duration(g.window, 'group.window', fail) : g.quiet !== undefined ? duration(g.quiet, 'group.quiet', fail) : (defaults?.windowMs ?? DEFAULT_RULE_WINDOW_MS)
  const quiet = g.window === undefined && (g.quiet !== undefined || defaults?.quiet === true)
  const threshold = g.threshold ?? 1
  if (!Number.isInteger(threshold) || (threshold as number) < 1 || (threshold as number) > MAX_THRESHOLD) fail(`group.threshold: expected a whole number from 1 to ${MAX_THRESHOLD}`)
  return { keyOf, by, windowMs, quiet, threshold: threshold as number }
}

/** Event fields are hostile input: only strings and numbers make a key, and only so long. */
function part(v: unknown): string {
  if (typeof v === 'number') return String(v)
  if (typeof v !== 'string') return '<none>'
  return v.length > MAX_KEY_PART ? v.slice(0, MAX_KEY_PART) : v
}

/** The few event fields an alert about the group shows (the event itself is not kept). */
export type GroupEvent = Pick<AuditEvent, 'auditID' | 'verb' | 'stage' | 'stageTimestamp' | 'user' | 'objectRef' | 'sourceIPs' | 'userAgent' | 'requestURI'>

export interface FindingGroup {
  /** Stable for a replay of the same log: the definition, the key and the first event's audit ID. */
  groupId: string
  key: string
  first: RuleFinding
  /** The latest finding: an update or an end shows its details (a burst's extent so far). */
  last: RuleFinding
  event: GroupEvent
  firstMs: number
  lastMs: number
  count: number
  auditIds: string[]
  threshold: number
  closesAtMs: number
}

export interface GroupChange {
  /** open: the group became a finding (its first event, or its threshold-th); update: it grew; end: its window closed. */
  kind: 'open' | 'update' | 'end'
  group: FindingGroup
  /** The group's count when it changed (the group itself goes on growing). */
  count: number
}

export class FindingGroups {
  readonly #specOf: (finding: RuleFinding) => GroupSpec | undefined
  readonly #groups: LRUCache<string, FindingGroup>
  /** Groups evicted to keep the bound (an evicted group that was a finding gets no end). */
  evictions = 0
  #clockMs = 0
  #lastSweepMs = -Infinity

  constructor(specOf: (finding: RuleFinding) => GroupSpec | undefined, maxGroups = DEFAULT_MAX_GROUPS) {
    this.#specOf = specOf
    this.#groups = new LRUCache<string, FindingGroup>({
      max: maxGroups,
      dispose: (_v, _k, reason) => {
        if (reason === 'evict') this.evictions++
      },
    })
  }

  get size(): number {
    return this.#groups.size
  }

  /**
   * Adds one event's finding to its group (tagging the finding with the group id)
   * and appends what changed. `timeMs` is the event's time; the groups' clock is
   * the newest seen, so a replay gives the same groups.
   */
  add(finding: RuleFinding, event: AuditEvent, timeMs: number | undefined, changes: GroupChange[]): void {
    const spec = this.#specOf(finding) ?? FALLBACK
    const t = timeMs ?? this.#clockMs
    if (t > this.#clockMs) this.#clockMs = t
    const key = `${finding.source}\u0000${finding.id}\u0000${spec.keyOf(event, finding)}`
    let g = this.#groups.get(key)
    if (g && t >= g.closesAtMs) {
      this.#groups.delete(key)
      if (g.count >= g.threshold) changes.push({ kind: 'end', group: g, count: g.count })
      g = undefined
    }
    if (!g) {
      g = {
        groupId: `${finding.id}-${createHash('sha256').update(`${key}\u0000${finding.auditId}`).digest('hex').slice(0, 16)}`,
        key: key.split('\u0000').slice(2).join(','),
        first: finding,
        last: finding,
        event: slimEvent(event),
        firstMs: t,
        lastMs: t,
        count: 0,
        auditIds: [],
        threshold: spec.threshold,
        closesAtMs: t + spec.windowMs,
      }
      this.#groups.set(key, g)
    }
    g.count++
    g.last = finding
    if (t > g.lastMs) g.lastMs = t
    if (spec.quiet) g.closesAtMs = g.lastMs + spec.windowMs
    if (g.auditIds.length < MAX_GROUP_AUDIT_IDS) g.auditIds.push(finding.auditId)
    finding.details.group = g.groupId
    if (g.count === g.threshold) changes.push({ kind: 'open', group: g, count: g.count })
    else if (g.count > g.threshold) changes.push({ kind: 'update', group: g, count: g.count })
  }

  /**
   * Ends the groups whose window the clock has passed. Called with each event's
   * time, it looks at the groups at most once per second of event time (a
   * sweep costs one look per group); Infinity ends them all.
   */
  advance(nowMs: number, changes: GroupChange[]): void {
    if (nowMs > this.#clockMs) this.#clockMs = nowMs
    if (nowMs - this.#lastSweepMs < SWEEP_INTERVAL_MS) return
    this.#lastSweepMs = nowMs
    const ended: string[] = []
    for (const [key, g] of this.#groups.entries()) if (g.closesAtMs <= nowMs) ended.push(key)
    for (const key of ended) {
      const g = this.#groups.get(key, { updateAgeOnGet: false })!
      this.#groups.delete(key)
      if (g.count >= g.threshold) changes.push({ kind: 'end', group: g, count: g.count })
    }
  }
}

/** A finding of a rule or detector no longer loaded (a reload between events): grouped as a rule would be by default. */
const FALLBACK: GroupSpec = compileGroup(undefined, 'rule', undefined, (m) => {
  throw new Error(m)
})

/** What a group keeps of its first event: a few fields, each cut short (a user agent, for one, is the client's to choose). */
export function slimEvent(ev: AuditEvent): GroupEvent {
  const ref = ev.objectRef
  const cut = (v: unknown) => (typeof v === 'string' ? v.slice(0, MAX_KEY_PART) : undefined)
  return {
    auditID: ev.auditID.slice(0, MAX_KEY_PART),
    verb: ev.verb.slice(0, MAX_KEY_PART),
    stage: ev.stage.slice(0, MAX_KEY_PART),
    stageTimestamp: cut(ev.stageTimestamp),
    user: { username: cut(ev.user?.username) },
    objectRef: ref && { resource: cut(ref.resource), subresource: cut(ref.subresource), namespace: cut(ref.namespace), name: cut(ref.name) },
    sourceIPs: ev.sourceIPs?.slice(0, 8).map((ip) => String(ip).slice(0, MAX_KEY_PART)),
    userAgent: cut(ev.userAgent),
    requestURI: cut(ev.requestURI?.split('?')[0]),
  }
}

/**
 * The finding that stands for a group in an alert or a report: its first event's at the opening,
 * its latest one's after (so a burst's growing extent shows), with the group's id, state, count
 * and first and last time in its details.
 */
export function groupFinding(change: GroupChange): RuleFinding {
  const g = change.group
  const shown = change.kind === 'open' ? g.first : g.last
  const details: Record<string, string> = {
    ...shown.details,
    group: g.groupId,
    groupState: change.kind,
    groupCount: String(change.count),
    groupFirstSeen: new Date(g.firstMs).toISOString(),
    groupLastSeen: new Date(g.lastMs).toISOString(),
  }
  const message = change.count > 1 ? `${shown.message} (${change.count} events, ${details.groupFirstSeen} to ${details.groupLastSeen})` : shown.message
  return { ...shown, message: message.length > 1024 ? `${message.slice(0, 1023)}…` : message, details }
}
