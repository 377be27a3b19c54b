// agent/main.ts still imports the policy command from here; it moves to
// './policy/cli.ts' with the lead's next change to main.ts, and this file goes.
export { policyCommand } from './cli.ts'
