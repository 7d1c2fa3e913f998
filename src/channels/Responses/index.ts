/**
 * The OpenAI Responses API channel. See docs/RESPONSES.md.
 */
export { HEARTBEAT } from "../../http/Sse.js"
export { make, OUT_OF_BAND_KEY } from "./Channel.js"
export type { Options } from "./Channel.js"
export * as LiveRun from "./LiveRun.js"
