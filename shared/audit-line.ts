// An audit line parsed without its response body. The body is half the bytes of
// a real apiserver log (a quarter of the lines carry one) and most readers never
// look at it: the agent's rules seldom do, the collector's query index never.
//
// The apiserver writes an event's fields in a fixed order, the response body right
// before requestReceivedTimestamp, and after that only strings (stageTimestamp,
// annotations): so the last `,"requestReceivedTimestamp":` of a line is the
// top-level one. The last `,"responseObject":` before it is the body's own key,
// unless the body holds a key of that name: then the line without the span is not
// valid JSON (its braces do not balance), and the caller parses the line whole.
// A rest that parses proves the cut was at the top level. Nothing in the span is
// checked: its bytes are JSON only if they parse when someone reads them.

const RESPONSE_KEY = Buffer.from(',"responseObject":')
const RECEIVED_KEY = Buffer.from(',"requestReceivedTimestamp":')

export interface WithoutResponseBody {
  /** The line's value without its responseObject. */
  value: unknown
  /** Where the body's value is in the line's bytes: [start, end). */
  bodyStart: number
  bodyEnd: number
}

/** The line (valid UTF-8) parsed without its response body; undefined when it has none where the apiserver puts it, or the rest is not JSON. */
export function parseWithoutResponseBody(line: Buffer): WithoutResponseBody | undefined {
  const end = line.lastIndexOf(RECEIVED_KEY)
  if (end === -1) return undefined
  const keyStart = line.lastIndexOf(RESPONSE_KEY, end)
  if (keyStart === -1) return undefined
  try {
    return { value: JSON.parse(line.toString('utf8', 0, keyStart) + line.toString('utf8', end)), bodyStart: keyStart + RESPONSE_KEY.length, bodyEnd: end }
  } catch {
    return undefined
  }
}

/**
 * The line (valid UTF-8) parsed: without its response body when the cut above holds (the body's
 * bytes are then where `bodyStart` and `bodyEnd` say), else whole; undefined when it is not JSON.
 */
export function parseAuditLine(line: Buffer): WithoutResponseBody | { value: unknown } | undefined {
  const cut = parseWithoutResponseBody(line)
  if (cut) return cut
  try {
    return { value: JSON.parse(line.toString('utf8')) }
  } catch {
    return undefined
  }
}
