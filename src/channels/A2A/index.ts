/**
 * The A2A channel (agent card, JSON-RPC 1.0), its executor and its task store.
 */
export * as A2A from "./A2A.js"
export * as Executor from "./Executor.js"
export * as TaskStore from "./TaskStore.js"
