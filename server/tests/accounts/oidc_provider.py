"""A small OpenID Connect provider for the single sign-on tests, served over real HTTP on
127.0.0.1.

It serves discovery, its JWKS, an authorization endpoint that signs in whoever the test names
(no login page) and a token endpoint that checks the client's secret, the redirect address, the
PKCE verifier and single use of each code, then returns an RS256 id token signed with joserfc.
A test may make it misbehave, so that the server's own checks can be seen to refuse: a token
signed with a key it does not publish, for another audience, already expired, or with another
nonce.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

Fault = Literal["bad_signature", "wrong_audience", "expired", "wrong_nonce", "wrong_issuer"]

CLIENT_ID = "metricis-test"
CLIENT_SECRET = "test-client-secret-0123456789"


@dataclass
class Person:
    sub: str
    email: str
    email_verified: bool = True
    name: str = "Test Person"


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str
    person: Person
    used: bool = False


@dataclass
class OidcProvider:
    issuer: str = ""
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": "signing"}))
    rogue_key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, {"kid": "signing"}))
    person: Person | None = None
    fault: Fault | None = None
    grants: dict[str, Grant] = field(default_factory=dict)
    token_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "jwks_uri": self.issuer + "/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }

    def jwks(self) -> dict[str, Any]:
        return dict(KeySet([self.key]).as_dict(private=False))

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any]]:
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            return 400, {}, {"error": "unauthorized_client"}
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, {}, {"error": "invalid_request"}
        if "openid" not in query.get("scope", "").split() or self.person is None:
            return 400, {}, {"error": "invalid_scope"}
        code = secrets.token_urlsafe(24)
        with self.lock:
            self.grants[code] = Grant(
                client_id=CLIENT_ID,
                redirect_uri=query["redirect_uri"],
                nonce=query.get("nonce"),
                challenge=query["code_challenge"],
                person=self.person,
            )
        target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        return 302, {"Location": target}, {}

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        self.token_requests += 1
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if authorization != expected:
            return 401, {"error": "invalid_client"}
        with self.lock:
            grant = self.grants.get(form.get("code", ""))
            if grant is None or grant.used:
                return 400, {"error": "invalid_grant"}
            grant.used = True
        verifier = form.get("code_verifier", "")
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if challenge != grant.challenge or form.get("redirect_uri") != grant.redirect_uri:
            return 400, {"error": "invalid_grant"}
        return 200, {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": self.id_token(grant),
        }

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": grant.person.sub,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            "email": grant.person.email,
            "email_verified": grant.person.email_verified,
            "name": grant.person.name,
        }
        key = self.key
        if self.fault == "bad_signature":
            key = self.rogue_key
        elif self.fault == "wrong_audience":
            claims["aud"] = "another-client"
        elif self.fault == "expired":
            claims["iat"], claims["exp"] = now - 900, now - 600
        elif self.fault == "wrong_nonce":
            claims["nonce"] = "not-the-nonce"
        elif self.fault == "wrong_issuer":
            claims["iss"] = "http://127.0.0.1:1/another"
        return jwt.encode({"alg": "RS256", "kid": "signing"}, claims, key)


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/.well-known/openid-configuration":
                self._send(200, provider.discovery(), {})
            elif url.path == "/jwks":
                self._send(200, provider.jwks(), {})
            elif url.path == "/authorize":
                query = {name: values[0] for name, values in parse_qs(url.query).items()}
                status, headers, body = provider.authorize(query)
                self._send(status, body, headers)
            else:
                self._send(404, {"error": "not_found"}, {})

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/token":
                self._send(404, {"error": "not_found"}, {})
                return
            length = int(self.headers.get("Content-Length", "0"))
            form = {
                name: values[0]
                for name, values in parse_qs(self.rfile.read(length).decode()).items()
            }
            status, body = provider.token(form, self.headers.get("Authorization"))
            self._send(status, body, {"Cache-Control": "no-store"})

    return Handler


def serve_provider() -> Iterator[OidcProvider]:
    """A provider on a free port of 127.0.0.1 for the duration of a test."""
    provider = OidcProvider()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(provider))
    provider.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
