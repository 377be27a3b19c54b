// Removes secret values from an audit line before it leaves the node: Secret
// `data` and `stringData` (single objects and lists), the bearer token of a
// TokenRequest, and any further paths the config names per resource. Keys stay;
// each value becomes a marker with a salted hash (equal values, equal markers),
// and every other byte of the line stays as the apiserver wrote it: the value
// spans are found by scanning the original text, never by re-serializing.
// Rules and detectors see the original event; only the shipped bytes change.
import { createHmac } from 'node:crypto'
import type { AuditEvent } from '../audit/event.ts'

export interface RedactorOptions {
  /** Key of the HMAC in the markers: per cluster, kept on the node. */
  salt: Buffer
  /** Extra paths per resource ("configmaps" or "group/resource"), e.g. { configmaps: ["requestObject.data.*"] }. */
  extraPaths?: Record<string, string[]>
}

export type RedactResult = { line: Buffer; paths: string[] } | undefined

/** Pattern segments: a key, `*` (any key), or `[*]` (any array index). */
type Pattern = string[]

const SECRET_PATHS = ['data.*', 'stringData.*']
const BUILTIN: Record<string, Pattern[]> = {
  secrets: ['requestObject', 'responseObject', 'responseObject.items.[*]', 'responseObject.object'].flatMap((base) => SECRET_PATHS.map((p) => `${base}.${p}`.split('.'))),
  'serviceaccounts/token': [['responseObject', 'status', 'token']],
}
const MAX_DEPTH = 128

/** The line could not be scanned (not JSON as expected, or nested too deep): its raw bytes must not ship. */
export class UnscannableLine extends Error {}

export function createRedactor(options: RedactorOptions): (line: Buffer, event: AuditEvent) => RedactResult {
  const byResource = new Map<string, Pattern[]>()
  for (const [resource, patterns] of Object.entries(BUILTIN)) byResource.set(resource, patterns)
  for (const [resource, paths] of Object.entries(options.extraPaths ?? {})) {
    byResource.set(resource, [...(byResource.get(resource) ?? []), ...paths.map((p) => p.split('.').map((s) => (s === '[*]' ? '[*]' : s)))])
  }
  const marker = (value: string) => `"auditrail:redacted:sha256:${createHmac('sha256', options.salt).update(value).digest('hex').slice(0, 16)}"`

  return (line, event) => {
    const ref = event.objectRef
    if (!ref?.resource) return undefined
    const resource = ref.subresource ? `${ref.resource}/${ref.subresource}` : ref.resource
    const patterns = byResource.get(resource) ?? (ref.apiGroup ? byResource.get(`${ref.apiGroup}/${resource}`) : undefined)
    // The common case costs one map lookup: lines about other resources are never scanned.
    if (!patterns) return undefined
    const text = line.toString('utf8')
    const spans = findSpans(text, patterns)
    if (spans.length === 0) return undefined
    // A value inside one already replaced (overlapping configured paths) goes with it.
    spans.sort((a, b) => a.start - b.start || b.end - a.end)
    let out = ''
    let at = 0
    const paths: string[] = []
    for (const s of spans) {
      if (s.start < at) continue
      out += text.slice(at, s.start) + marker(text.slice(s.start, s.end))
      at = s.end
      paths.push(s.path)
    }
    out += text.slice(at)
    return { line: Buffer.from(out, 'utf8'), paths }
  }
}

interface Span { start: number; end: number; path: string }

/** Spans of the values whose path matches a pattern, in text order. Throws UnscannableLine. */
export function findSpans(text: string, patterns: Pattern[]): Span[] {
  const spans: Span[] = []
  let i = 0
  const fail = (why: string): never => {
    throw new UnscannableLine(`${why} at character ${i}`)
  }
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\n' || text[i] === '\t' || text[i] === '\r')) i++
  }
  const str = (): string => {
    if (text[i] !== '"') fail('expected a string')
    const start = ++i
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1
    if (i >= text.length) fail('unterminated string')
    return JSON.parse(text.slice(start - 1, ++i)) as string
  }
  // Which patterns can still match below `path`, and does one match `path` exactly?
  const step = (live: Pattern[], key: string, isIndex: boolean, depth: number): Pattern[] =>
    live.filter((p) => depth < p.length && (p[depth] === key || (p[depth] === '*' && !isIndex) || (p[depth] === '[*]' && isIndex)))
  const value = (live: Pattern[], path: string, depth: number): void => {
    if (depth > MAX_DEPTH) fail('nested too deep')
    ws()
    const start = i
    const exact = live.some((p) => p.length === depth)
    const c = text[i]
    if (c === '{') {
      i++
      ws()
      if (text[i] === '}') i++
      else {
        for (;;) {
          ws()
          const key = str()
          ws()
          if (text[i++] !== ':') fail('expected ":"')
          const below = live.length > 0 ? step(live, key, false, depth) : live
          value(below, path ? `${path}.${key}` : key, depth + 1)
          ws()
          if (text[i] === ',') i++
          else if (text[i] === '}') { i++; break }
          else fail('expected "," or "}"')
        }
      }
    } else if (c === '[') {
      i++
      ws()
      if (text[i] === ']') i++
      else {
        for (let n = 0; ; n++) {
          const below = live.length > 0 ? step(live, '[*]', true, depth) : live
          value(below, `${path}[${n}]`, depth + 1)
          ws()
          if (text[i] === ',') i++
          else if (text[i] === ']') { i++; break }
          else fail('expected "," or "]"')
        }
      }
    } else if (c === '"') {
      str()
    } else {
      while (i < text.length && !',}] \n\t\r'.includes(text[i]!)) i++
      if (i === start) fail('expected a value')
    }
    if (exact) spans.push({ start, end: i, path })
  }
  value(patterns, '', 0)
  ws()
  if (i !== text.length) fail('trailing characters')
  return spans
}
