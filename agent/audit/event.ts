// An audit.k8s.io/v1 Event as the agent sees it after decoding one line.
// Only the fields the agent reads are typed; everything else stays as parsed JSON.
import { isUtf8 } from 'node:buffer'
import { parseAuditLine } from '../../shared/audit-line.ts'

export interface UserInfo {
  username?: string
  uid?: string
  groups?: string[]
  extra?: Record<string, string[]>
}

export interface ObjectReference {
  resource?: string
  namespace?: string
  name?: string
  uid?: string
  apiGroup?: string
  apiVersion?: string
  resourceVersion?: string
  subresource?: string
}

export interface ResponseStatus {
  code?: number
  status?: string
  reason?: string
  message?: string
}

export interface AuditEvent {
  kind?: string
  apiVersion?: string
  level?: string
  auditID: string
  stage: string
  requestURI?: string
  verb: string
  user: UserInfo
  impersonatedUser?: UserInfo
  sourceIPs?: string[]
  userAgent?: string
  objectRef?: ObjectReference
  responseStatus?: ResponseStatus
  requestObject?: unknown
  responseObject?: unknown
  requestReceivedTimestamp?: string
  stageTimestamp?: string
  annotations?: Record<string, string>
}

export type DecodeResult = { event: AuditEvent } | { unparsed: string }

/**
 * Decodes one line (without its newline). A line that is not an audit event is
 * not an error for the pipeline: the reason says why, and the line still ships.
 */
export function decodeAuditLine(line: Uint8Array): DecodeResult {
  if (!isUtf8(line)) return { unparsed: 'invalid UTF-8' }
  const bytes = Buffer.from(line.buffer, line.byteOffset, line.byteLength)
  // The response body is parsed when a rule reads it (shared/audit-line.ts says why that is safe).
  const parsed = parseAuditLine(bytes)
  if (!parsed) return { unparsed: 'not JSON' }
  const result = toAuditEvent(parsed.value)
  if ('bodyStart' in parsed && 'event' in result) defineLazyBody(result.event, bytes, parsed.bodyStart, parsed.bodyEnd)
  return result
}

const UNREADABLE_BODY = Symbol('response body not JSON')
const BODY_SOURCE = Symbol('response body bytes')

interface BodySource {
  line: Buffer
  start: number
  end: number
}

/**
 * responseObject as a property that parses its bytes when first read, then
 * holds the value. Bytes that are not JSON (a line damaged inside its body:
 * the apiserver never writes one) read as no body, and the event is marked.
 * One getter for every event, its bytes in a property of the event's own: a
 * getter made per event gave each event a hidden class of its own, made in
 * the old generation (0.5 MB a young collection at full speed, 40-60 MiB of
 * peak RSS until a full collection freed them).
 */
function defineLazyBody(event: AuditEvent, line: Buffer, start: number, end: number): void {
  Object.defineProperty(event, BODY_SOURCE, { value: { line, start, end } satisfies BodySource, configurable: true })
  Object.defineProperty(event, 'responseObject', LAZY_BODY)
}

const LAZY_BODY: PropertyDescriptor = {
  configurable: true,
  enumerable: true,
  get(this: AuditEvent & { [BODY_SOURCE]: BodySource }) {
    const { line, start, end } = this[BODY_SOURCE]
    let body: unknown
    try {
      body = JSON.parse(line.toString('utf8', start, end))
    } catch {
      delete this.responseObject
      Object.defineProperty(this, UNREADABLE_BODY, { value: true })
      return undefined
    }
    Object.defineProperty(this, 'responseObject', { value: body, writable: true, enumerable: true, configurable: true })
    return body
  },
}

/**
 * Whether the whole line the event came from is JSON: its response body,
 * left for later by decodeAuditLine, is parsed now if it was not yet. Whoever
 * reads the line's text as JSON (the redactor) asks this first.
 */
export function bodyIsJson(event: AuditEvent): boolean {
  void event.responseObject
  return !Object.hasOwn(event, UNREADABLE_BODY)
}

/**
 * Checks the shape of a parsed value: what every stage carries must be there,
 * and every field the agent reads must have its type when present (a real
 * apiserver never writes otherwise; a forged line does). Anything else is
 * unparsed: shipped as evidence, never inspected.
 */
export function toAuditEvent(value: unknown): DecodeResult {
  if (!isObject(value)) return { unparsed: 'not a JSON object' }
  const e = value
  if (e.kind !== undefined && e.kind !== 'Event') return { unparsed: `kind is ${JSON.stringify(e.kind).slice(0, 40)}, not Event` }
  if (typeof e.auditID !== 'string') return { unparsed: 'auditID missing or not a string' }
  if (typeof e.stage !== 'string') return { unparsed: 'stage missing or not a string' }
  if (typeof e.verb !== 'string') return { unparsed: 'verb missing or not a string' }
  if (!isObject(e.user)) return { unparsed: 'user missing or not an object' }
  const wrong = wrongField(e)
  if (wrong) return { unparsed: `field ${wrong}` }
  return { event: value as unknown as AuditEvent }
}

const STRINGS = ['level', 'requestURI', 'userAgent', 'requestReceivedTimestamp', 'stageTimestamp'] as const
const OBJECT_REF_STRINGS = ['resource', 'namespace', 'name', 'uid', 'apiGroup', 'apiVersion', 'resourceVersion', 'subresource'] as const

/** The first field of a known name whose value has the wrong type, with what it should be. */
function wrongField(e: Record<string, unknown>): string | undefined {
  for (let i = 0; i < STRINGS.length; i++) {
    const key = STRINGS[i]!
    if (e[key] !== undefined && typeof e[key] !== 'string') return `${key}: expected a string`
  }
  const user = wrongUser(e.user as Record<string, unknown>, 'user')
  if (user) return user
  if (e.impersonatedUser !== undefined) {
    if (!isObject(e.impersonatedUser)) return 'impersonatedUser: expected an object'
    const impersonated = wrongUser(e.impersonatedUser, 'impersonatedUser')
    if (impersonated) return impersonated
  }
  if (e.sourceIPs !== undefined && !isStringList(e.sourceIPs)) return 'sourceIPs: expected a list of strings'
  if (e.objectRef !== undefined) {
    if (!isObject(e.objectRef)) return 'objectRef: expected an object'
    for (let i = 0; i < OBJECT_REF_STRINGS.length; i++) {
      const key = OBJECT_REF_STRINGS[i]!
      if (e.objectRef[key] !== undefined && typeof e.objectRef[key] !== 'string') return `objectRef.${key}: expected a string`
    }
  }
  if (e.responseStatus !== undefined) {
    if (!isObject(e.responseStatus)) return 'responseStatus: expected an object'
    if (e.responseStatus.code !== undefined && !Number.isInteger(e.responseStatus.code)) return 'responseStatus.code: expected a whole number'
  }
  if (e.annotations !== undefined && !isStringMap(e.annotations)) return 'annotations: expected an object of strings'
  return undefined
}

function isStringMap(v: unknown): boolean {
  if (!isObject(v)) return false
  for (const key in v) if (typeof v[key] !== 'string') return false
  return true
}

function wrongUser(u: Record<string, unknown>, at: string): string | undefined {
  if (u.username !== undefined && typeof u.username !== 'string') return `${at}.username: expected a string`
  if (u.uid !== undefined && typeof u.uid !== 'string') return `${at}.uid: expected a string`
  if (u.groups !== undefined && !isStringList(u.groups)) return `${at}.groups: expected a list of strings`
  return undefined
}

/**
 * An exec request carries its command in the URI, one `command` parameter per
 * argument, in order (`.../pods/web-1/exec?command=tar&command=cf&command=-&...`),
 * encoded as Go's url.Values does ('+' for a space). Only exec requests have one:
 * undefined for anything else, [] for an exec that names no command. Bounded: a
 * forged URI of a million arguments costs one scan of the URI and yields at most
 * MAX_EXEC_ARGS arguments of at most MAX_EXEC_ARG_LENGTH characters.
 */
export const MAX_EXEC_ARGS = 64
export const MAX_EXEC_ARG_LENGTH = 1024

export function execCommandOf(event: AuditEvent): string[] | undefined {
  const ref = event.objectRef
  const uri = event.requestURI
  if (ref?.resource !== 'pods' || ref.subresource !== 'exec' || uri === undefined) return undefined
  const command: string[] = []
  const query = uri.indexOf('?')
  if (query === -1) return command
  for (let at = query + 1; at < uri.length && command.length < MAX_EXEC_ARGS; ) {
    let end = uri.indexOf('&', at)
    if (end === -1) end = uri.length
    if (uri.startsWith('command=', at)) {
      // Three encoded characters at most per decoded one; URLSearchParams keeps a malformed %-escape as it is.
      const raw = uri.slice(at, Math.min(end, at + 'command='.length + 3 * MAX_EXEC_ARG_LENGTH))
      command.push((new URLSearchParams(raw).get('command') ?? '').slice(0, MAX_EXEC_ARG_LENGTH))
    }
    at = end + 1
  }
  return command
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function isStringList(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string')
}
