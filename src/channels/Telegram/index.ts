/**
 * The Telegram channel and its parts.
 */
export * as Render from "../shared/ReplyText.js"
export * as BotApi from "./BotApi.js"
export * as Telegram from "./Telegram.js"
export * as Updates from "./Updates.js"
