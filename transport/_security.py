"""CURVE keys, the bind policy, and the ZAP decision (a plain class; the I/O thread serves it).

Secure by default: a node binds to loopback (or ``ipc://`` / ``inproc://``) unless it has a
CURVE key pair, or the caller passes ``insecure=True`` (then a warning is logged). A node with
keys runs as a CURVE server with ``ZAP_DOMAIN`` and ``ZAP_ENFORCE_DOMAIN`` set, so libzmq asks
this node's ZAP handler about every client and refuses the connection when no handler answers:
if the authenticator is not running, nothing gets in (fail closed).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from llmos.transport._errors import AuthError

__all__ = [
    "ZAP_DOMAIN",
    "ZAP_ENDPOINT",
    "KeyPair",
    "Trust",
    "ZapHandler",
    "check_bind",
    "generate_keys",
    "is_local_endpoint",
    "load_keys",
    "load_public_keys",
]

log = logging.getLogger("llmos.transport")

ZAP_DOMAIN = b"llmos"
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
_ZAP_VERSION = b"1.0"
_KEY_LEN = 40  # a Z85-encoded CURVE key


@dataclasses.dataclass(frozen=True, slots=True)
class KeyPair:
    """A node's CURVE key pair, both keys Z85-encoded (40 bytes each).

    Attributes:
        public: the public key; give it to the nodes that should trust this one.
        secret: the secret key; never leaves this node.
    """

    public: bytes
    secret: bytes

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public.decode()!r}, secret=...)"

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh key pair in memory (nothing written to disk)."""
        public, secret = zmq.curve_keypair()
        return cls(public, secret)


def generate_keys(directory: str | os.PathLike[str], name: str = "node") -> KeyPair:
    """Create ``name.key`` (public) and ``name.key_secret`` in ``directory`` (zmq.auth format).

    Returns:
        The new key pair.

    Raises:
        AuthError: the directory cannot be created or written.
    """
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        _, secret_file = zmq.auth.create_certificates(path, name)
        os.chmod(secret_file, 0o600)
    except OSError as exc:
        raise AuthError(
            f"cannot write CURVE keys to {path}: {exc}; pick a writable folder"
        ) from exc
    return load_keys(secret_file)


def load_keys(location: str | os.PathLike[str] | KeyPair) -> KeyPair:
    """Load a key pair from a ``.key_secret`` file or a folder holding ``node.key_secret``.

    A folder with exactly one ``*.key_secret`` file is accepted too.

    Raises:
        AuthError: no secret key found there, or the file is not a zmq.auth certificate.
    """
    if isinstance(location, KeyPair):
        return location
    path = Path(location)
    if path.is_dir():
        candidates = sorted(path.glob("*.key_secret"))
        preferred = path / "node.key_secret"
        if preferred.exists():
            candidates = [preferred]
        if len(candidates) != 1:
            raise AuthError(
                f"expected one *.key_secret file (or node.key_secret) in {path}, found "
                f"{len(candidates)}; create one with generate_keys() or 'llmos node --gen-keys'"
            )
        path = candidates[0]
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read CURVE keys from {path}: {exc}") from exc
    if secret is None:
        raise AuthError(f"{path} holds only a public key; point to the .key_secret file")
    return KeyPair(public, secret)


def load_public_keys(specs: Iterable[str | bytes | os.PathLike[str]]) -> set[bytes]:
    """Collect Z85 public keys from keys, ``.key`` / ``.key_secret`` files, or folders of them.

    Raises:
        AuthError: a spec is neither a 40-character Z85 key nor a readable certificate path.
    """
    keys: set[bytes] = set()
    for spec in specs:
        if isinstance(spec, bytes | str) and len(spec) == _KEY_LEN and not os.path.exists(spec):
            key = spec.encode() if isinstance(spec, str) else spec
            try:
                z85.decode(key)
            except (ValueError, KeyError) as exc:
                raise AuthError(f"{spec!r} is not a Z85-encoded CURVE public key") from exc
            keys.add(key)
            continue
        path = Path(os.fsdecode(spec))
        files = sorted(path.glob("*.key")) if path.is_dir() else [path]
        for file in files:
            try:
                public, _ = zmq.auth.load_certificate(file)
            except (OSError, ValueError) as exc:
                raise AuthError(
                    f"{file} is neither a 40-character Z85 public key nor a readable zmq.auth "
                    f"certificate: {exc}"
                ) from exc
            keys.add(public)
    return keys


def is_local_endpoint(endpoint: str) -> bool:
    """True for ``ipc://``, ``inproc://`` and ``tcp://`` on a loopback address."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp" or not rest:
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(bind: str, keys: KeyPair | None, insecure: bool) -> None:
    """The bind policy: off loopback, ``ipc://`` and ``inproc://``, a node needs keys, or
    ``insecure`` (then a warning is logged).

    Raises:
        AuthError: ``bind`` is not local, and there are no keys and ``insecure`` is not set.
    """
    if is_local_endpoint(bind) or keys is not None:
        return
    if not insecure:
        raise AuthError(
            f"refusing to bind {bind} without CURVE keys: anyone who can reach it could "
            "run code here. Pass keys= (see generate_keys) and allow_keys=, or "
            "insecure=True if the network is trusted"
        )
    log.warning("node binds %s WITHOUT encryption or authentication (insecure)", bind)


class Trust:
    """Whom a node trusts over CURVE: the clients it lets in, the server key of each peer.

    Args:
        keys: the node's own key pair (None: no CURVE; then only peers without keys).
        allow_keys: public keys of the clients let in (the node's own key always is).
        peer_keys: the CURVE server key of each peer address.
        default_peer_key: the server key of every peer address missing from ``peer_keys``.

    Raises:
        AuthError: a key cannot be read, or ``default_peer_key`` without ``keys``.
    """

    __slots__ = ("default_peer_key", "keys", "peer_keys", "zap_handler")

    def __init__(
        self,
        keys: KeyPair | None,
        allow_keys: Iterable[str | bytes | os.PathLike[str]],
        peer_keys: Mapping[str, str | bytes],
        default_peer_key: str | bytes | None,
    ) -> None:
        self.keys = keys
        self.zap_handler: ZapHandler | None = None
        if keys is not None:
            self.zap_handler = ZapHandler(load_public_keys(allow_keys) | {keys.public})
        self.peer_keys: dict[str, bytes] = {}  # shared with the node's outbound side
        for address, key in peer_keys.items():
            self.add_peer_key(address, key)
        self.default_peer_key: bytes | None = None
        if default_peer_key is not None:
            if keys is None:
                raise AuthError("default_peer_key= needs keys= (this node's own CURVE key pair)")
            self.default_peer_key = next(iter(load_public_keys([default_peer_key])))

    def add_peer_key(self, node: str, public_key: str | bytes) -> None:
        """Trust ``public_key`` as the CURVE server key of the peer at ``node``."""
        self.peer_keys[node] = next(iter(load_public_keys([public_key])))

    def server_key(self, node: str) -> bytes | None:
        """The CURVE server key of the peer at ``node`` (None: it is reached without CURVE).

        Raises:
            AuthError: a key is known for it, but this node has no key pair to use it.
        """
        key = self.peer_keys.get(node, self.default_peer_key)
        if key is not None and self.keys is None:
            raise AuthError(
                f"a CURVE key is known for {node} but this node has no key pair; "
                "create the Node with keys="
            )
        return key


class ZapHandler:
    """The ZAP (RFC 27) decision for one node: allow a CURVE client whose key is listed.

    Plain protocol logic; the node's I/O thread owns the REP socket and calls :meth:`handle`.

    Args:
        allowed: Z85 public keys of the clients let in. Empty: nobody gets in.
    """

    def __init__(self, allowed: Iterable[bytes]) -> None:
        self.allowed = frozenset(allowed)
        self.accepted = 0
        self.refused = 0
        self._last_warning = -1e9

    def handle(self, request: list[bytes]) -> list[bytes]:
        """Answer one ZAP request (the frames received on the ZAP socket)."""
        if len(request) < 6:
            request_id = request[1] if len(request) > 1 else b""
            return self._reply(request_id, b"400", b"malformed ZAP request")
        version, request_id, domain, address, _identity, mechanism = request[:6]
        credentials = request[6:]
        if version != _ZAP_VERSION:
            return self._reply(request_id, b"400", b"unsupported ZAP version")
        if domain != ZAP_DOMAIN or mechanism != b"CURVE" or len(credentials) != 1:
            return self._reply(request_id, b"400", b"only CURVE clients are accepted")
        key = z85.encode(credentials[0])
        if key not in self.allowed:
            now = time.monotonic()
            if now - self._last_warning > 1.0:  # a client retrying must not flood the log
                self._last_warning = now
                log.warning(
                    "refused a CURVE client from %s: public key %s is not on this node's "
                    "allowlist (%d refused so far)",
                    address.decode(errors="replace"),
                    key.decode(),
                    self.refused + 1,
                )
            return self._reply(request_id, b"400", b"public key not allowed")
        return self._reply(request_id, b"200", b"OK", key)

    def _reply(self, request_id: bytes, code: bytes, text: bytes, user: bytes = b"") -> list[bytes]:
        if code == b"200":
            self.accepted += 1
        else:
            self.refused += 1
        return [_ZAP_VERSION, request_id, code, text, user, b""]
