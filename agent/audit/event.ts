// An audit.k8s.io/v1 Event as the agent sees it after decoding one line.
// Only the fields the agent reads are typed; everything else stays as parsed JSON.
import { isUtf8 } from 'node:buffer'

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
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(line.buffer, line.byteOffset, line.byteLength).toString('utf8'))
  } catch {
    return { unparsed: 'not JSON' }
  }
  return toAuditEvent(value)
}

/** Checks the shape of a parsed value; an event missing what every stage carries is unparsed. */
export function toAuditEvent(value: unknown): DecodeResult {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { unparsed: 'not a JSON object' }
  const e = value as Record<string, unknown>
  if (e.kind !== undefined && e.kind !== 'Event') return { unparsed: `kind is ${JSON.stringify(e.kind).slice(0, 40)}, not Event` }
  if (typeof e.auditID !== 'string') return { unparsed: 'auditID missing or not a string' }
  if (typeof e.stage !== 'string') return { unparsed: 'stage missing or not a string' }
  if (typeof e.verb !== 'string') return { unparsed: 'verb missing or not a string' }
  if (e.user === null || typeof e.user !== 'object' || Array.isArray(e.user)) return { unparsed: 'user missing or not an object' }
  return { event: value as AuditEvent }
}
