// The operator's window on a process, the agent's and the collector's alike: /metrics (Prometheus text
// format), /livez (the process and its event loop respond) and /readyz (what `ready` says: for the agent,
// in sync with the collector and reading; for the collector, its store takes writes).
import type { Server } from 'node:http'
import type { Registry } from 'prom-client'
import { createServer } from './node-http.ts'

/**
 * Who connects here: Prometheus, the kubelet's probes, a person with curl; a handful at a time. Past
 * the cap new connections are closed at once, so that a flood of them cannot take the descriptors
 * the process needs (the agent's audit log: 20,600 idle connections once took them all).
 */
const MAX_CONNECTIONS = 64
/** A connection silent this long is closed: an idle keep-alive, or a client that sends too slowly. */
const IDLE_TIMEOUT_MS = 10_000

export interface ObserveLimits {
  maxConnections: number
  idleTimeoutMs: number
}

export interface ObserveServer {
  url: string
  close(): Promise<void>
}

/**
 * `ready` is read on every probe; `unready`, when given and `ready` says yes, may still name a reason not
 * to take traffic (the collector's store cannot commit), which the 503 carries.
 */
export async function startObserveServer(options: { listen: string; registry: Registry; ready: () => boolean; unready?: () => Promise<string | undefined>; limits?: Partial<ObserveLimits> }): Promise<ObserveServer> {
  const limits: ObserveLimits = { maxConnections: MAX_CONNECTIONS, idleTimeoutMs: IDLE_TIMEOUT_MS, ...options.limits }
  const { host, port } = parseListen(options.listen)
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end()
      return
    }
    if (path === '/metrics') {
      options.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': options.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
      )
    } else if (path === '/livez') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n')
    } else if (path === '/readyz') {
      if (!options.ready()) {
        res.writeHead(503, { 'content-type': 'text/plain' }).end('not ready: not yet in sync with the collector, or the collector has not answered recently\n')
        return
      }
      const unready = options.unready ? options.unready() : Promise.resolve(undefined)
      unready.then(
        (problem) => res.writeHead(problem === undefined ? 200 : 503, { 'content-type': 'text/plain' }).end(problem === undefined ? 'ok\n' : `not ready: ${problem}\n`),
        (err: Error) => res.writeHead(503, { 'content-type': 'text/plain' }).end(`not ready: ${err.message}\n`),
      )
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /livez or /readyz\n')
    }
  })
  server.requestTimeout = 10_000
  server.headersTimeout = 5_000
  server.maxConnections = limits.maxConnections
  // Inactivity on the socket, whatever the request's state (none yet, headers, keep-alive): destroyed.
  server.timeout = limits.idleTimeoutMs
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  const address = server.address()
  const bound = typeof address === 'object' && address ? address.port : port
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(listen)
  const port = m ? Number(m[2]) : NaN
  if (!m || port > 65535) throw new Error(`listen address ${JSON.stringify(listen)} must be HOST:PORT`)
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1') || '0.0.0.0', port }
}
