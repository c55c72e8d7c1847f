"""Header names as bytes, hop-by-hop rules, and the forwarding headers a proxy adds.

Names are kept lower-case everywhere in the engine: the parser callbacks lower-case
each name once, so every lookup and edit afterwards is a plain bytes comparison.
Header values are never decoded; the engine moves bytes.
"""

from __future__ import annotations

# Knative's header names (reference 4.8), lower-case as the engine stores them.
K_NETWORK_PROBE = b"k-network-probe"
K_NETWORK_HASH = b"k-network-hash"
K_PROXY_REQUEST = b"k-proxy-request"
K_ORIGINAL_HOST = b"k-original-host"
K_KUBELET_PROBE = b"k-kubelet-probe"
KNATIVE_SERVING_REVISION = b"knative-serving-revision"
KNATIVE_SERVING_NAMESPACE = b"knative-serving-namespace"
KNATIVE_SERVING_TAG = b"knative-serving-tag"
KNATIVE_SERVING_DEFAULT_ROUTE = b"knative-serving-default-route"

HOST = b"host"
USER_AGENT = b"user-agent"
CONNECTION = b"connection"
CONTENT_LENGTH = b"content-length"
TRANSFER_ENCODING = b"transfer-encoding"
UPGRADE = b"upgrade"
EXPECT = b"expect"
FORWARDED = b"forwarded"
X_FORWARDED_FOR = b"x-forwarded-for"
X_FORWARDED_PROTO = b"x-forwarded-proto"
X_FORWARDED_HOST = b"x-forwarded-host"

# RFC 9110 7.6.1 plus the de-facto ones (Keep-Alive, Proxy-Connection) that Go's
# ReverseProxy also removes. Content-Length is not hop-by-hop, but the engine re-frames
# every message itself, so it is taken out here and written back by the framer.
HOP_BY_HOP = frozenset(
    {
        CONNECTION,
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        TRANSFER_ENCODING,
        UPGRADE,
        b"proxy-authenticate",
        b"proxy-authorization",
        CONTENT_LENGTH,
    }
)

# Connection tokens that are options, not header names to strip.
_CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})


def connection_named_headers(connection_values: list[bytes]) -> frozenset[bytes]:
    """The header names listed in Connection, which RFC 9110 7.6.1 makes hop-by-hop."""
    names = set()
    for value in connection_values:
        for token in value.split(b","):
            token = token.strip().lower()
            if token and token not in _CONNECTION_OPTIONS:
                names.add(token)
    return frozenset(names)


def has_token(values: list[bytes], token: bytes) -> bool:
    """Whether a comma-separated header (all its lines) carries `token`, case-insensitively."""
    for value in values:
        for item in value.split(b","):
            if item.strip().lower() == token:
                return True
    return False


def get(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header `name` (lower-case), or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


def remove(headers: list[tuple[bytes, bytes]], names: frozenset[bytes]) -> None:
    """Delete every header whose name is in `names`, in place."""
    headers[:] = [item for item in headers if item[0] not in names]


def append_forwarded_for(headers: list[tuple[bytes, bytes]], client_ip: bytes) -> None:
    """Append the client IP to X-Forwarded-For, joining earlier lines as Go's proxy does."""
    found = -1
    for i, (key, _) in enumerate(headers):
        if key == X_FORWARDED_FOR:
            if found < 0:
                found = i
            else:  # a second line: fold into the first (rare; costs a rebuild)
                prior = [v for k, v in headers if k == X_FORWARDED_FOR]
                remove(headers, frozenset({X_FORWARDED_FOR}))
                headers.append((X_FORWARDED_FOR, b", ".join(prior) + b", " + client_ip))
                return
    if found < 0:
        headers.append((X_FORWARDED_FOR, client_ip))
    else:
        headers[found] = (X_FORWARDED_FOR, headers[found][1] + b", " + client_ip)


def build_forwarded(xff: bytes | None, xfp: bytes | None, xfh: bytes | None) -> bytes:
    """The `Forwarded` value Knative's queue-proxy shim derives from X-Forwarded-*.

    The first element carries for/host/proto; every further X-Forwarded-For node adds its
    own `for=`. A node containing ':' is taken as IPv6 and written `"[addr]"`. Example:
    xff=b"1.2.3.4, ::1", xfp=b"https", xfh=None → b'for=1.2.3.4;proto=https, for="[::1]"'.
    """
    nodes = [_forwarded_node(n) for n in (xff or b"").split(b",")]
    pairs = []
    if xff:
        pairs.append(b"for=" + nodes[0])
    if xfh:
        pairs.append(b"host=" + xfh)
    if xfp:
        pairs.append(b"proto=" + xfp)
    elements = [b";".join(pairs)]
    elements.extend(b"for=" + node for node in nodes[1:])
    return b", ".join(elements)


def _forwarded_node(node: bytes) -> bytes:
    node = node.strip()
    return b'"[' + node + b']"' if b":" in node else node


def add_forwarded_shim(headers: list[tuple[bytes, bytes]]) -> None:
    """Add `Forwarded` when absent and any X-Forwarded-For/-Proto/-Host is present."""
    xff = xfp = xfh = None
    for key, value in headers:
        if key == FORWARDED:
            return
        if key == X_FORWARDED_FOR and xff is None:
            xff = value
        elif key == X_FORWARDED_PROTO and xfp is None:
            xfp = value
        elif key == X_FORWARDED_HOST and xfh is None:
            xfh = value
    if xff or xfp or xfh:
        headers.append((FORWARDED, build_forwarded(xff, xfp, xfh)))


def serialize_headers(parts: list[bytes], headers: list[tuple[bytes, bytes]]) -> None:
    """Append `name: value\\r\\n` pieces for every header to `parts` (joined once later)."""
    append = parts.append
    for key, value in headers:
        append(key)
        append(b": ")
        append(value)
        append(b"\r\n")
