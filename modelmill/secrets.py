"""The one masking of secrets: URLs keep scheme, user and host but never a password, a token or
a webhook's path; free text has every configured secret replaced before it is logged."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"


def mask_url(url: str) -> str:
    """A URL without its password and query values (`postgresql://user:***@host/db`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if "@" not in parts.netloc and not parts.query and not parts.fragment:
        return url  # nothing secret in it (sqlite:///path keeps its three slashes)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = urlencode([(k, MASK) for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, "" if not parts.fragment else MASK))


def mask_bearer_url(url: str) -> str:
    """A URL whose path is the credential (a webhook): only scheme and host stay."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}/{MASK}" if parts.scheme and host else MASK


def without_userinfo(url: str) -> str:
    """A URL for a link: the user info (and its password) dropped."""
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return scheme + sep + host.rpartition("@")[2] + slash + path if sep else url


def secret_fragments(value: str) -> list[str]:
    """The parts of a secret that must never appear: the value, its password, query values, path."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return [value]
    fragments = [parts.password or ""] + [v for _, v in parse_qsl(parts.query) if len(v) >= 4]
    if parts.scheme.startswith("http") and len(parts.path) > 8:  # a webhook's path is its token
        fragments += [parts.path] + [seg for seg in parts.path.split("/") if len(seg) >= 8]
    # a value with a credential inside, or not a URL at all (a token): the whole value is secret
    if "://" not in value or any(fragments):
        fragments.append(value)
    return [f for f in fragments if f]


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every fragment of every secret replaced by the mask (longest first)."""
    fragments = sorted({f for s in secrets if s for f in secret_fragments(s)}, key=len, reverse=True)
    for fragment in fragments:
        text = text.replace(fragment, MASK)
    return text
