/**
 * The Discord channel and its parts.
 */
export * as Api from "./Api.js"
export * as Discord from "./Discord.js"
export * as Verify from "./Verify.js"
