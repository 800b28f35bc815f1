"""Sign-in through an identity provider (Streamlit's st.login) in real Chromium, up to the
provider's authorization page: no real provider is reachable offline, so a stand-in
discovery document and authorization page are served from 127.0.0.1."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import Stack
from tests.support.http import QuietHandler, serving

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000


class StandInProvider(ThreadingHTTPServer):
    """A discovery document and an authorization page on 127.0.0.1, recording requests."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProviderHandler)
        self.requests: list[str] = []
        self.base = f"http://127.0.0.1:{self.server_address[1]}"


class _ProviderHandler(QuietHandler):
    server: StandInProvider

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        base = self.server.base
        if self.path == "/.well-known/openid-configuration":
            body = json.dumps(
                {
                    "issuer": base,
                    "authorization_endpoint": f"{base}/authorize",
                    "token_endpoint": f"{base}/token",
                    "jwks_uri": f"{base}/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["S256"],
                }
            ).encode()
            kind = "application/json"
        elif self.path.startswith("/authorize"):
            body, kind = b"<html><body><h1>Stand-in provider</h1></body></html>", "text/html"
        else:
            self.send_error(404)
            return
        self.answer(200, body, kind)


@pytest.fixture
def provider() -> Iterator[StandInProvider]:
    with serving(StandInProvider()) as server:
        yield server


@pytest.fixture
def page_args(provider: StandInProvider, tmp_path: Path) -> list[str]:
    """The page configured for st.login with the stand-in provider (its secrets.toml)."""
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{"c" * 40}"\n'
        'client_id = "ytmp3-test"\n'
        'client_secret = "not-a-real-secret"\n'
        f'server_metadata_url = "{provider.base}/.well-known/openid-configuration"\n'
    )
    return ["--secrets.files", str(secrets)]


def test_sign_in_through_an_identity_provider_reaches_its_authorization_page(
    provider: StandInProvider, stack: Stack, chromium: Any
) -> None:
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(stack.page_url)
        button = page.get_by_role("button", name="Sign in")
        button.wait_for()
        assert page.get_by_label("Video or playlist URL").count() == 0
        assert page.get_by_text("Conversions").count() == 0
        button.click()
        page.wait_for_url(re.compile(re.escape(provider.base) + r"/authorize\?"))
        page.get_by_text("Stand-in provider").wait_for()
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(page.url).query)
        port = urllib.parse.urlsplit(stack.page_url).port
        assert query["client_id"] == ["ytmp3-test"]
        assert query["response_type"] == ["code"]
        assert query["redirect_uri"] == [f"http://127.0.0.1:{port}/oauth2callback"]
        assert "openid" in query["scope"][0].split()
        assert query["state"][0] and query["nonce"][0]
        assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
        assert "/.well-known/openid-configuration" in provider.requests
    except Exception:
        print(stack.logs())
        raise
    finally:
        context.close()
