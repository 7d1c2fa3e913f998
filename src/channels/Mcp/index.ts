/**
 * The MCP channel (the hosted agent as a tool over Streamable HTTP) and its tool.
 */
export * as Mcp from "./Mcp.js"
export * as Tool from "./Tool.js"
