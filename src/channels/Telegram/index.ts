/**
 * The Telegram channel and its parts.
 */
export * as BotApi from "./BotApi.js"
export * as Render from "./Render.js"
export * as Telegram from "./Telegram.js"
export * as Updates from "./Updates.js"
