"""The HTTP surface: GraphQL types (thin), the ASGI app and its routes."""
