"""Transport security (TLS, mutual TLS) and bearer-token authentication.

Tokens come from a file, one per line (blank lines and `#` comments ignored), so they can be
rotated by rewriting the file and restarting, and never appear on a command line. Clients send
`authorization: Bearer <token>`; the comparison is constant-time.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from pathlib import Path

import grpc

from .errors import ConfigError

# Method-name prefixes that `auth_exempt` names may refer to.
EXEMPT_PREFIXES = {
    "health": ("/grpc.health.v1.Health/",),
    "reflection": ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/"),
}


def server_credentials(cert: str, key: str, client_ca: str | None) -> grpc.ServerCredentials:
    """TLS with the server's certificate chain; with `client_ca`, clients must present a
    certificate it signed (mutual TLS)."""
    try:
        chain, private = Path(cert).read_bytes(), Path(key).read_bytes()
        roots = Path(client_ca).read_bytes() if client_ca else None
    except OSError as exc:
        raise ConfigError([f"TLS: cannot read {exc.filename}: {exc.strerror}"]) from None
    return grpc.ssl_server_credentials(
        [(private, chain)], root_certificates=roots, require_client_auth=roots is not None
    )


class TokenAuth:
    def __init__(self, tokens: Iterable[str], exempt: Iterable[str]) -> None:
        self._tokens = [t.encode() for t in tokens]
        self._exempt = tuple(p for name in exempt for p in EXEMPT_PREFIXES[name])

    @classmethod
    def from_file(cls, path: str, exempt: Iterable[str]) -> TokenAuth:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise ConfigError([f"auth_token_file: cannot read {path}: {exc.strerror}"]) from None
        tokens = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if not tokens:
            raise ConfigError([f"auth_token_file: {path} holds no token"])
        return cls(tokens, exempt)

    def required_for(self, method: str) -> bool:
        return not method.startswith(self._exempt)

    def allows(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
        for key, value in metadata or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                offered = value[len("Bearer ") :].strip().encode()
                # Compare with every token (no early exit) so timing reveals nothing.
                return any([hmac.compare_digest(offered, token) for token in self._tokens])
        return False
