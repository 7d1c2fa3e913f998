/**
 * The OpenAI Responses API channel. See docs/RESPONSES.md.
 */
export { make, OUT_OF_BAND_KEY, withHeartbeat } from "./Channel.js"
export type { Options } from "./Channel.js"
