// pgpass (the .pgpass lookup node-postgres itself used) ships no types: what postgres-store.ts uses of it.
declare module 'pgpass' {
  export default function pgpass(connInfo: { host?: string; port?: number; database?: string; user?: string }, done: (password: string | undefined) => void): void
}
