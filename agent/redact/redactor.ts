// Removes secret values from an audit line before it leaves the node: Secret
// `data` and `stringData` (single objects and lists), the bearer token of a
// TokenRequest, and any further paths the config names per resource. Keys stay;
// each value becomes a marker with a salted hash (equal values, equal markers),
// and every other byte of the line stays as the apiserver wrote it: the value
// spans are found by scanning the original text, never by re-serializing.
// Rules and detectors see the original event; only the shipped bytes change.
import { createHmac, createSecretKey } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { bodyIsJson, type AuditEvent } from '../audit/event.ts'

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
/** At most 1024 values of at most 512 characters: under 1 MiB. */
const MARKER_CACHE_ENTRIES = 1024
const MARKER_CACHE_MAX_VALUE = 512

/** The line could not be scanned (nested too deep, or not the JSON its event was parsed from): its raw bytes must not ship. */
export class UnscannableLine extends Error {}

const BACKSLASH = 0x5c

/**
 * Returns the redactor. `line` must be the text `event` was parsed from (so it
 * is valid JSON: the scanner locates values, it does not validate).
 */
export function createRedactor(options: RedactorOptions): (line: Buffer, event: AuditEvent) => RedactResult {
  const byResource = new Map<string, Pattern[]>()
  for (const [resource, patterns] of Object.entries(BUILTIN)) byResource.set(resource, patterns)
  for (const [resource, paths] of Object.entries(options.extraPaths ?? {})) {
    byResource.set(resource, [...(byResource.get(resource) ?? []), ...paths.map((p) => p.split('.').map((s) => (s === '[*]' ? '[*]' : s)))])
  }
  const needles = new Map([...byResource].map(([resource, patterns]) => [resource, keyNeedles(patterns)]))
  const key = createSecretKey(options.salt)
  // The same secrets are read over and over (controllers, operators): their markers are remembered,
  // short values only, so the cache stays small; the values are in this process's memory anyway.
  const markers = new LRUCache<string, string>({ max: MARKER_CACHE_ENTRIES })
  const hmacMarker = (value: string) => `"auditrail:redacted:sha256:${createHmac('sha256', key).update(value).digest('hex').slice(0, 16)}"`
  const marker = (value: string) => {
    // A long value is never remembered: looking it up would only hash it once more.
    if (value.length > MARKER_CACHE_MAX_VALUE) return hmacMarker(value)
    let m = markers.get(value)
    if (m === undefined) markers.set(value, (m = hmacMarker(value)))
    return m
  }

  return (line, event) => {
    const ref = event.objectRef
    if (!ref?.resource) return undefined
    const resource = ref.subresource ? `${ref.resource}/${ref.subresource}` : ref.resource
    const name = byResource.has(resource) ? resource : ref.apiGroup ? `${ref.apiGroup}/${resource}` : undefined
    const patterns = name === undefined ? undefined : byResource.get(name)
    // The common case costs one map lookup: lines about other resources are never scanned.
    if (!patterns) return undefined
    // Most lines about secrets carry no values (metadata-level, deletes, watches): a line
    // without a pattern's key, and without escapes that could spell one, is not scanned.
    const keys = needles.get(name!)
    if (keys && line.indexOf(BACKSLASH) === -1 && !keys.some((k) => line.includes(k))) return undefined
    if (!bodyIsJson(event)) throw new UnscannableLine('its response body is not JSON')
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

/**
 * For each pattern, its last literal key as it appears in JSON text ("data"): a
 * line holding none of them cannot match. Undefined when some pattern has no
 * literal key (it could match anything: always scan).
 */
function keyNeedles(patterns: Pattern[]): Buffer[] | undefined {
  const needles = new Set<string>()
  for (const p of patterns) {
    const literal = p.findLast((s) => s !== '*' && s !== '[*]')
    if (literal === undefined) return undefined
    needles.add(JSON.stringify(literal))
  }
  return [...needles].map((n) => Buffer.from(n))
}

interface Span { start: number; end: number; path: string }

const QUOTE = 0x22
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const COMMA = 0x2c

/**
 * Spans of the values whose path matches a pattern, in text order. `text` is
 * valid JSON. Throws UnscannableLine when nested deeper than MAX_DEPTH.
 */
export function findSpans(text: string, patterns: Pattern[]): Span[] {
  return new SpanScanner(text).scan(patterns)
}

// A class, not closures made at every call: V8 compiled the closures of each call anew, over and
// over (the scanner's functions were still being optimized a minute into a steady run).
class SpanScanner {
  readonly spans: Span[] = []
  readonly #text: string
  readonly #n: number
  #i = 0

  constructor(text: string) {
    this.#text = text
    this.#n = text.length
  }

  scan(patterns: Pattern[]): Span[] {
    this.#value(patterns, '', 0)
    return this.spans
  }

  #fail(why: string): never {
    throw new UnscannableLine(`${why} at character ${this.#i}`)
  }

  #ws(): void {
    const text = this.#text
    let i = this.#i
    for (let c = text.charCodeAt(i); c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d; c = text.charCodeAt(++i));
    this.#i = i
  }

  /** Moves past the string at i; true when it holds an escape. */
  #skipString(): boolean {
    const text = this.#text
    const n = this.#n
    let escaped = false
    let i = this.#i
    for (i++; i < n; i++) {
      const c = text.charCodeAt(i)
      if (c === QUOTE) break
      if (c === BACKSLASH) {
        escaped = true
        i++
      }
    }
    this.#i = i + 1
    return escaped
  }

  #key(): string {
    const start = this.#i
    return this.#skipString() ? (JSON.parse(this.#text.slice(start, this.#i)) as string) : this.#text.slice(start + 1, this.#i - 1)
  }

  #skipScalar(): void {
    const text = this.#text
    const n = this.#n
    let i = this.#i
    for (let c = text.charCodeAt(i); i < n && c !== COMMA && c !== CLOSE_OBJECT && c !== CLOSE_ARRAY && c !== 0x20 && c !== 0x0a && c !== 0x09 && c !== 0x0d; c = text.charCodeAt(++i));
    this.#i = i
  }

  /** Moves past a value no pattern reaches, counting brackets (strings skipped whole). */
  #skipValue(depth: number): void {
    const text = this.#text
    const c = text.charCodeAt(this.#i)
    if (c === QUOTE) return void this.#skipString()
    if (c !== OPEN_OBJECT && c !== OPEN_ARRAY) return this.#skipScalar()
    let level = 0
    do {
      if (this.#i >= this.#n) this.#fail('unterminated value')
      const d = text.charCodeAt(this.#i)
      if (d === QUOTE) {
        this.#skipString()
        continue
      }
      if (d === OPEN_OBJECT || d === OPEN_ARRAY) {
        if (depth + ++level > MAX_DEPTH) this.#fail('nested too deep')
      } else if (d === CLOSE_OBJECT || d === CLOSE_ARRAY) {
        level--
      }
      this.#i++
    } while (level > 0)
  }

  #value(live: Pattern[], path: string, depth: number): void {
    if (depth > MAX_DEPTH) this.#fail('nested too deep')
    const text = this.#text
    this.#ws()
    const start = this.#i
    const c = text.charCodeAt(start)
    if (live.length === 0) {
      this.#skipValue(depth)
    } else if (c === OPEN_OBJECT) {
      this.#i++
      this.#ws()
      while (text.charCodeAt(this.#i) !== CLOSE_OBJECT) {
        if (this.#i >= this.#n) this.#fail('unterminated object')
        const k = this.#key()
        this.#ws()
        this.#i++ // the colon
        this.#value(step(live, k, false, depth), path ? `${path}.${k}` : k, depth + 1)
        this.#ws()
        if (text.charCodeAt(this.#i) === COMMA) {
          this.#i++
          this.#ws()
        }
      }
      this.#i++
    } else if (c === OPEN_ARRAY) {
      this.#i++
      this.#ws()
      const below = step(live, '[*]', true, depth)
      for (let index = 0; text.charCodeAt(this.#i) !== CLOSE_ARRAY; index++) {
        if (this.#i >= this.#n) this.#fail('unterminated array')
        this.#value(below, `${path}[${index}]`, depth + 1)
        this.#ws()
        if (text.charCodeAt(this.#i) === COMMA) {
          this.#i++
          this.#ws()
        }
      }
      this.#i++
    } else if (c === QUOTE) {
      this.#skipString()
    } else {
      this.#skipScalar()
    }
    if (this.#i === start) this.#fail('expected a value')
    if (live.some((p) => p.length === depth)) this.spans.push({ start, end: this.#i, path })
  }
}

/** Which patterns can still match below `path`, given the segment just read at `depth`. */
function step(live: Pattern[], segment: string, isIndex: boolean, depth: number): Pattern[] {
  return live.filter((p) => depth < p.length && (p[depth] === segment || (p[depth] === '*' && !isIndex) || (p[depth] === '[*]' && isIndex)))
}
