"""A small GraphQL-over-HTTP client for the tests, over TestClient or a real server."""

from __future__ import annotations

from typing import Any

import httpx


class GraphQLClient:
    def __init__(self, http: httpx.Client | Any, path: str = "/graphql") -> None:
        self.http = http
        self.path = path

    def post(self, query: str, variables: dict | None = None) -> dict:
        response = self.http.post(self.path, json={"query": query, "variables": variables or {}})
        assert response.status_code in (200, 400), response.text
        return response.json()

    def data(self, query: str, variables: dict | None = None) -> dict:
        body = self.post(query, variables)
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def error(self, query: str, variables: dict | None = None) -> dict:
        body = self.post(query, variables)
        assert body.get("errors"), body
        return body["errors"][0]


NEXT_STEPS = """
query Next($user: ID!, $channel: Channel! = WEB, $limit: Int! = 5) {
  nextSteps(userId: $user, channel: $channel, limit: $limit) {
    decisionId personalized policyVersion modelVersion variant
    steps { rank score reasons step { id title channels requires { id } introduces { id title } } }
  }
}
"""

REGISTER = """
mutation Register($input: RegisterUserInput!) {
  registerUser(input: $input) { id role industry plan consents { purpose granted at } eventCount }
}
"""

RECORD = """
mutation Record($input: EventInput!) { recordEvent(input: $input) { id userId type stepId featureId at } }
"""

RECORD_MANY = "mutation Many($inputs: [EventInput!]!) { recordEvents(inputs: $inputs) }"

GRANT = "mutation G($u: ID!, $p: Purpose!) { grantConsent(userId: $u, purpose: $p) { purpose granted at } }"
WITHDRAW = "mutation W($u: ID!, $p: Purpose!) { withdrawConsent(userId: $u, purpose: $p) { purpose granted at } }"

USER = """
query U($id: ID!) { user(id: $id) { id role industry plan eventCount consents { purpose granted at } completedSteps { id } } }
"""


def register(client, user_id="u1", **fields):
    """Register a user over GraphQL: an analyst in retail on the team plan who consented to everything, but for ``fields``."""
    payload = {
        "id": user_id,
        "role": "analyst",
        "industry": "retail",
        "plan": "team",
        "signupChannel": "WEB",
        "consents": ["PERSONALIZATION", "ANALYTICS"],
    }
    payload.update(fields)
    return client.data(REGISTER, {"input": payload})["registerUser"]
