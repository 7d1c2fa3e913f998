/**
 * The domain: schemas and errors shared by the core and every channel. No services.
 */
export * from "./ChannelRequest.js"
export * from "./Content.js"
export * from "./Errors.js"
export * from "./Identity.js"
export * from "./Ids.js"
export * from "./Message.js"
export * as Time from "./Time.js"
