// Structured JSON logs on stderr (stdout stays free for command output).
// Event contents are never logged above debug: records are named by file and offset.
import { pino, type Logger } from 'pino'

export function createLogger(level: string, component = 'agent'): Logger {
  return pino({ level, base: { component } }, pino.destination({ fd: 2, sync: false }))
}
