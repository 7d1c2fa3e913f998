/**
 * The Bot Framework Activity protocol channel (Teams, Web Chat, ... through Azure Bot Service) and its parts.
 */
export * as Activity from "./Activity.js"
export * as Auth from "./Auth.js"
export * as Cards from "./Cards.js"
export * as Connector from "./Connector.js"
export * as Schema from "./Schema.js"
