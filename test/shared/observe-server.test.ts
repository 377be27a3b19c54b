// The agent's health and metrics port under a flood of idle connections (issue 20): a cap on
// connections, idle ones closed, and the endpoints answer again as soon as there is room.
import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import { Registry } from 'prom-client'
import { startObserveServer } from '../../shared/observe-server.ts'

t.test('a flood of idle connections is capped and timed out; /livez answers after it', async (t) => {
  const server = await startObserveServer({ listen: '127.0.0.1:0', registry: new Registry(), ready: () => true, limits: { maxConnections: 8, idleTimeoutMs: 500 } })
  t.teardown(() => server.close())
  const { port } = new URL(server.url)
  const sockets = await Promise.all(Array.from({ length: 200 }, async () => {
    const socket = connect(Number(port), '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    return socket
  }))
  t.teardown(() => sockets.forEach((s) => s.destroy()))
  await new Promise((r) => setTimeout(r, 200))
  const open = () => sockets.filter((s) => !s.closed).length
  t.ok(open() <= 8, `${open()} of 200 held open`)
  await new Promise((r) => setTimeout(r, 800))
  t.equal(open(), 0, 'idle connections are closed')
  const res = await fetch(`${server.url}/livez`)
  t.equal(res.status, 200)
  t.equal(await res.text(), 'ok\n')
})

t.test('by default the cap and the timeout hold too', async (t) => {
  const server = await startObserveServer({ listen: '127.0.0.1:0', registry: new Registry(), ready: () => true })
  t.teardown(() => server.close())
  const { port } = new URL(server.url)
  const sockets = await Promise.all(Array.from({ length: 100 }, async () => {
    const socket = connect(Number(port), '127.0.0.1')
    socket.on('error', () => {})
    await once(socket, 'connect')
    return socket
  }))
  t.teardown(() => sockets.forEach((s) => s.destroy()))
  await new Promise((r) => setTimeout(r, 200))
  t.equal(sockets.filter((s) => !s.closed).length, 64)
})
