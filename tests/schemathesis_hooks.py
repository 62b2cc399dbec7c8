"""Authentication for the API fuzzing of tests/api_description.rs.

FIS_FUZZ_AS chooses who the fuzzer is:
- "user": a user who accepted the terms. The token comes from `account/register` with an
  OpenID token the homeserver stand-in knows, and is fetched again whenever an answer is 401,
  since the fuzzer also calls `account/logout`;
- "trusted": a trusted server, by its shared secret (FIS_FUZZ_SECRET);
- "none": no credentials.
"""

import os

import requests
import schemathesis

BASE_URL = os.environ["FIS_FUZZ_BASE_URL"]
AS = os.environ.get("FIS_FUZZ_AS", "none")


@schemathesis.auth()
class Credentials:
    def get(self, case, context):
        if AS == "trusted":
            return os.environ["FIS_FUZZ_SECRET"]
        if AS == "user":
            answer = requests.post(
                f"{BASE_URL}/_matrix/identity/v2/account/register",
                json={
                    "access_token": os.environ["FIS_FUZZ_OPENID_TOKEN"],
                    "token_type": "Bearer",
                    "matrix_server_name": "hs.test",
                    "expires_in": 3600,
                },
                timeout=30,
            )
            answer.raise_for_status()
            return answer.json()["token"]
        return None

    def set(self, case, data, context):
        if data is not None:
            case.headers = case.headers or {}
            case.headers["Authorization"] = f"Bearer {data}"
