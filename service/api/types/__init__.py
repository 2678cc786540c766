"""GraphQL types of the public contract, one module per area; ``service.api.schema`` has the roots."""
