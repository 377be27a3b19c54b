// node:http by require, not by an ES module import. An import makes Node read every export of
// the module, and in Node 24 three of them (WebSocket, CloseEvent, MessageEvent) are getters that
// load Node's own copy of undici, 763 KB of JavaScript, when first read. Nothing here uses them.
import { createRequire } from 'node:module'

const http = createRequire(import.meta.url)('node:http') as typeof import('node:http')

export const createServer: typeof http.createServer = http.createServer
