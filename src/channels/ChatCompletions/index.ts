/**
 * The OpenAI Chat Completions channel and the models listing. See docs/CHAT_COMPLETIONS.md.
 */
export { make } from "./Channel.js"
export type { Options } from "./Channel.js"
export * as Models from "./Models.js"
