"""NSM path tokens and the default server authorization policies, as NSM's sdk has them.

See README.md ("Token rules") for the sources. In short:
  * generate (sdk pkg/tools/spiffejwt/token.go): ES256 JWT signed with the own SVID key,
    claims {sub: own SPIFFE ID, aud: [peer SPIFFE ID] (a JSON array; only when the peer has
    a TLS certificate), exp: NumericDate (whole seconds)}, where
    exp = min(now + maxTokenLifetime, own SVID NotAfter, peer cert NotAfter).
  * per-RPC metadata (pkg/tools/token/creds.go, context.go): nsm-client-token = the JWT,
    nsm-client-token-expires = the same expiry, RFC3339Nano.
  * server (endpoint chain: updatepath -> begin -> updatetoken -> authorize): after moving to
    its own segment, the server stores the metadata token+expiry in the previous segment
    (only if both keys are present exactly once and the time parses; else the path's own
    token stays), writes its own token (aud = the caller) in its own segment, then checks
    leftSide = {index, path_segments[:index+1]} against every policy of
    opa/policies/common/*.rego and opa/policies/server/*.rego; a failure is PERMISSION_DENIED.
"""
from __future__ import annotations

import base64
import datetime as _dt
import json
import time

import jwt as pyjwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ca import SVID, spiffe_id_from_cert

TOKEN_KEY = "nsm-client-token"
EXPIRES_KEY = "nsm-client-token-expires"
DEFAULT_MAX_TOKEN_LIFETIME = 10 * 60  # NSM_MAX_TOKEN_LIFETIME default of the forwarders/nsmgr ("10m")


def rfc3339nano(t: _dt.datetime) -> str:
    """Go's time.RFC3339Nano for a UTC time: fractional seconds without trailing zeros, 'Z'."""
    t = t.astimezone(_dt.timezone.utc)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{t.microsecond:06d}".rstrip("0")
    return base + (("." + frac) if frac else "") + "Z"


def parse_rfc3339(s: str) -> _dt.datetime:
    s2 = s.replace("Z", "+00:00")
    if "." in s2:  # Python takes at most 6 fractional digits
        head, rest = s2.split(".", 1)
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        s2 = head + "." + rest[:i][:6].ljust(6, "0") + rest[i:]
    return _dt.datetime.fromisoformat(s2)


def sign(key: ec.EllipticCurvePrivateKey, claims: dict) -> str:
    return pyjwt.encode(claims, key, algorithm="ES256", headers={"typ": "JWT"})


def generate(svid: SVID, peer_cert: x509.Certificate | None, max_lifetime: float = DEFAULT_MAX_TOKEN_LIFETIME,
             now: _dt.datetime | None = None) -> tuple[str, _dt.datetime]:
    """spiffejwt.TokenGeneratorFunc: (token, expireTime)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    exp = now + _dt.timedelta(seconds=max_lifetime)
    exp = min(exp, svid.not_after)
    claims = {"sub": svid.spiffe_id}
    if peer_cert is not None:
        pid = spiffe_id_from_cert(peer_cert)
        if pid is None:
            raise ValueError("peer certificate has no SPIFFE ID")
        exp = min(exp, peer_cert.not_valid_after_utc)
        claims["aud"] = [pid]
    claims["exp"] = int(exp.timestamp())  # jwt/v4 NumericDate, TimePrecision = 1s (truncated)
    return sign(svid.key, claims), exp


def metadata(token: str, expires: _dt.datetime) -> list[tuple[str, str]]:
    return [(TOKEN_KEY, token), (EXPIRES_KEY, rfc3339nano(expires))]


def from_metadata(md) -> tuple[str, _dt.datetime] | None:
    """token.FromContext: both keys exactly once and a parsable time, else None."""
    toks = [v for k, v in md if k == TOKEN_KEY]
    exps = [v for k, v in md if k == EXPIRES_KEY]
    if len(toks) != 1 or len(exps) != 1:
        return None
    try:
        return toks[0], parse_rfc3339(exps[0])
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# the policies (OPA semantics of io.jwt.decode / io.jwt.verify_es256)

def _b64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def decode(token: str) -> dict | None:
    """io.jwt.decode: three dot-separated base64url parts, header and payload JSON objects.
    Returns the payload, or None where OPA's decode is undefined/errors."""
    if not isinstance(token, str):
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(_b64(parts[0]))
        payload = json.loads(_b64(parts[1]))
        _b64(parts[2])
    except Exception:  # noqa: BLE001
        return None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    return payload


def verify_es256(token: str, cert: x509.Certificate | None) -> bool:
    """io.jwt.verify_es256(token, certificate PEM): signature over 'h.p' with the cert's
    P-256 public key, raw r||s (64 bytes). No claim checks."""
    if cert is None or not isinstance(token, str):
        return False
    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        sig = _b64(parts[2])
        if len(sig) != 64:
            return False
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        pub = cert.public_key()
        if not isinstance(pub, ec.EllipticCurvePublicKey):
            return False
        pub.verify(der, (parts[0] + "." + parts[1]).encode(), ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError, Exception):  # noqa: BLE001
        return False


def tokens_valid(segs: list[dict]) -> bool:
    """common/tokens_valid.rego: no segments, or every token decodes."""
    return len(segs) == 0 or all(decode(s.get("token", "")) is not None for s in segs)


def tokens_chained(segs: list[dict]) -> bool:
    """common/tokens_chained.rego: fewer than 2 segments, or for every neighbour pair
    some element of aud[i] (aud must be an array) equals sub[i+1]."""
    if len(segs) < 2:
        return True
    for a, b in zip(segs, segs[1:]):
        p1, p2 = decode(a.get("token", "")), decode(b.get("token", ""))
        if p1 is None or p2 is None:
            return False
        aud = p1.get("aud")
        if not isinstance(aud, (list, dict)) or "sub" not in p2:
            return False
        vals = list(aud.values()) if isinstance(aud, dict) else aud
        if not any(v == p2["sub"] for v in vals):
            return False
    return True


def tokens_expired(segs: list[dict], now: float | None = None) -> bool:
    """common/tokens_expired.rego (true = none expired): every token decodes and now < exp."""
    now = time.time() if now is None else now
    for s in segs:
        p = decode(s.get("token", ""))
        if p is None:
            return False
        exp = p.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool) or not now < exp:
            return False
    return True


def prev_token_signed(segs: list[dict], index: int, peer_cert: x509.Certificate | None) -> bool:
    """server/prev_token_signed.rego: index-1 >= 0 and the token of segment index-1
    verifies (ES256) with the TLS peer's certificate."""
    prev = index - 1
    if prev < 0 or prev >= len(segs):
        return False
    return verify_es256(segs[prev].get("token", ""), peer_cert)


SERVER_POLICIES = ("tokens_chained", "tokens_expired", "tokens_valid", "prev_token_signed")


def failing_server_policies(segs: list[dict], index: int, peer_cert: x509.Certificate | None,
                            now: float | None = None) -> list[str]:
    """The names of all default server policies that fail on leftSide, in NSM's evaluation order."""
    left = segs[:index + 1]
    results = {
        "tokens_chained": tokens_chained(left),
        "tokens_expired": tokens_expired(left, now),
        "tokens_valid": tokens_valid(left),
        "prev_token_signed": prev_token_signed(left, index, peer_cert),
    }
    return [name for name in SERVER_POLICIES if not results[name]]


def check_server(segs: list[dict], index: int, peer_cert: x509.Certificate | None,
                 now: float | None = None) -> str | None:
    """NSM stops at the first failing policy (common/*.rego in file order, then
    server/prev_token_signed.rego); returns its name, or None when all pass."""
    f = failing_server_policies(segs, index, peer_cert, now)
    return f[0] if f else None


def next_token_signed(segs: list[dict], index: int, peer_cert: x509.Certificate | None) -> bool:
    """client/next_token_signed.rego (client side, on the answer): token of segment index+1
    verifies with the server's certificate."""
    nxt = index + 1
    return nxt < len(segs) and verify_es256(segs[nxt].get("token", ""), peer_cert)
