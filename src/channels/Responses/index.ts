/**
 * The OpenAI Responses API channel. See docs/RESPONSES.md.
 */
export { make, OUT_OF_BAND_KEY } from "./Channel.js"
export type { Options } from "./Channel.js"
export { HEARTBEAT, LiveRun } from "./LiveRun.js"
