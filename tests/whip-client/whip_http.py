"""HTTP for the WHIP test clients (standard library only)."""

import urllib.error
import urllib.request


def http(method, url, token, body=None, content_type=None):
    """One WHIP request with the stream's bearer token: (status, headers, body)."""
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=15) as res:
            return res.status, dict(res.headers), res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()
