// The parts of the Connect protocol (unary, binary proto) that both sides use.
// https://connectrpc.com/docs/protocol: errors travel as JSON {code, message}
// with an HTTP status derived from the code.

export const PROTO_CONTENT_TYPE = 'application/proto'

export const CONNECT_CODES = {
  canceled: 499,
  unknown: 500,
  invalid_argument: 400,
  deadline_exceeded: 504,
  not_found: 404,
  already_exists: 409,
  permission_denied: 403,
  resource_exhausted: 429,
  failed_precondition: 400,
  aborted: 409,
  out_of_range: 400,
  unimplemented: 501,
  internal: 500,
  unavailable: 503,
  data_loss: 500,
  unauthenticated: 401,
} as const

export type ConnectCode = keyof typeof CONNECT_CODES

export class ConnectError extends Error {
  readonly code: ConnectCode
  constructor(code: ConnectCode, message: string) {
    super(message)
    this.name = 'ConnectError'
    this.code = code
  }

  get httpStatus(): number {
    return CONNECT_CODES[this.code]
  }

  toJSON(): { code: ConnectCode; message: string } {
    return { code: this.code, message: this.message }
  }
}

export function isConnectCode(v: unknown): v is ConnectCode {
  return typeof v === 'string' && Object.hasOwn(CONNECT_CODES, v)
}

/** Reads a Connect error body; a peer that sends anything else gets a code from its HTTP status. */
export function parseConnectError(status: number, body: string): ConnectError {
  try {
    const parsed: unknown = JSON.parse(body)
    if (parsed && typeof parsed === 'object') {
      const { code, message } = parsed as { code?: unknown; message?: unknown }
      if (isConnectCode(code)) return new ConnectError(code, typeof message === 'string' ? message.slice(0, 2000) : '')
    }
  } catch {
    // not JSON: fall through to the status
  }
  return new ConnectError(codeForStatus(status), `HTTP ${status}${body ? `: ${body.slice(0, 200)}` : ''}`)
}

function codeForStatus(status: number): ConnectCode {
  switch (status) {
    case 400: return 'invalid_argument'
    case 401: return 'unauthenticated'
    case 403: return 'permission_denied'
    case 404: return 'unimplemented'
    case 429: return 'resource_exhausted'
    case 502: case 503: case 504: return 'unavailable'
    default: return 'unknown'
  }
}
