// The V8 flags the agent process runs with: the image's ENTRYPOINT and `npm run bench`
// pass them (a test holds the Dockerfile to this list). Flags cannot be set from inside
// the process once V8 has sized its heap, hence a list for whoever starts it.
//
// --max-semi-space-size: V8 sizes the young generation from the machine's memory (64 MiB
// on a 24 GiB node). The agent's garbage is short-lived (lines, parsed events), and a
// smaller young generation is scavenged more often but cheaper. Measured on the catch-up of
// 300,000 generated events (2 cores): default 58.2 CPU s per million events, peak RSS 314
// MiB; 16 MiB: 44.4 s, 290 MiB; 8 MiB: 45.5 s, 279 MiB; 4 MiB: 46.4 s, 268 MiB.
export const AGENT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=8']
