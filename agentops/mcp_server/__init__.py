"""`/mcp/`: the agents a personal API key may use, as the tools of a streamable-HTTP MCP
server, so other agents and IDEs can call them."""
