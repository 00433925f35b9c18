"""Signing in to the console through the city's OpenID Connect provider (a real one in
process: oidc-provider-mock, Authlib's authorization server behind a login form), in a
real browser: the person's ID token becomes their bearer token, the services verify it
against the provider's keys, and the record names the provider's `sub`."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from lifeline.devstack import Stack
from oidc_provider_mock import run_server_in_thread
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Databases
from tests.e2e.test_console import acknowledge, fire_order

CLIENT_ID = "lifeline-console"


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    with run_server_in_thread(require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="module")
def stack(databases: Databases, provider: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    secret = tmp_path_factory.mktemp("oidc") / "client-secret"
    secret.write_text("the console's secret at the provider")
    trust = {"LIFELINE_AUTH_JWKS_URL": f"{provider}/jwks",
             "LIFELINE_AUTH_JWKS_ISSUER": provider, "LIFELINE_AUTH_JWKS_AUDIENCE": CLIENT_ID,
             "LIFELINE_CONSOLE_OIDC_ISSUER": provider,
             "LIFELINE_CONSOLE_OIDC_CLIENT_ID": CLIENT_ID,
             "LIFELINE_CONSOLE_OIDC_CLIENT_SECRET_FILE": str(secret)}
    with Stack(tmp_path_factory.mktemp("oidc-stack"), database_url=databases.create(),
               console=True, extra_env=trust) as running:
        yield running


def at_provider(browser: Browser, stack: Stack, sub: str, after: str = "/") -> Page:
    """A fresh browser on the console's sign-in page, sent on to the provider's form."""
    assert stack.console is not None
    page = browser.new_context(ignore_https_errors=True).new_page()
    page.goto(f"{stack.console.url}/signin?{urlencode({'next': after})}")
    page.get_by_role("link", name="Sign in with your organisation's account").click()
    page.locator("input[name=sub]").first.fill(sub)
    return page


def test_a_fire_liaison_signs_in_at_the_provider_and_the_record_names_them(
        browser: Browser, stack: Stack, provider: str) -> None:
    httpx.put(f"{provider}/users/chief-li", json={
        "roles": ["department"], "department": "fire"}).raise_for_status()
    incident_id, order_id = fire_order(stack)

    page = at_provider(browser, stack, "chief-li")
    page.get_by_role("button", name="Authorize").click()
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("#who")).to_contain_text("chief-li")

    assert acknowledge(page, stack, incident_id, order_id) == "chief-li"


def test_a_person_the_provider_gives_no_roles_is_told_and_not_signed_in(
        browser: Browser, stack: Stack) -> None:
    page = at_provider(browser, stack, "visitor-zhou")  # the provider knows no roles of theirs
    page.get_by_role("button", name="Authorize").click()
    expect(page.locator("#problem")).to_contain_text("'roles' must be a list")
    assert "/signin" in page.url


def test_a_refusal_at_the_provider_comes_back_saying_so(browser: Browser, stack: Stack) -> None:
    page = at_provider(browser, stack, "chief-li")
    page.get_by_role("button", name="Deny").click()
    expect(page.locator("#problem")).to_contain_text("access_denied")


def test_a_callback_not_started_in_this_browser_opens_nothing(stack: Stack) -> None:
    """Login CSRF: a code and state from someone else's sign-in, sent to a victim's
    browser, must not sign the victim in as that someone."""
    assert stack.console is not None
    with httpx.Client(verify=False) as web:
        answer = web.get(f"{stack.console.url}/signin/oidc/callback",
                         params={"state": "someone-elses", "code": "theirs"})
    assert answer.status_code == 303
    assert "not+started+in+this+browser" in answer.headers["location"]
    assert "lifeline_session" not in answer.headers.get("set-cookie", "")


@pytest.mark.parametrize("elsewhere", ["//elsewhere.example/", "/\\elsewhere.example/",
                                       "https://elsewhere.example/"])
def test_no_sign_in_sends_the_browser_on_to_another_site(
        browser: Browser, stack: Stack, provider: str, elsewhere: str) -> None:
    """An open redirect would let a phishing link wear the console's address."""
    assert stack.console is not None
    httpx.put(f"{provider}/users/chief-li", json={
        "roles": ["viewer"], "department": "fire"}).raise_for_status()
    by_provider = at_provider(browser, stack, "chief-li", after=elsewhere)
    by_provider.get_by_role("button", name="Authorize").click()
    by_link = browser.new_context(ignore_https_errors=True).new_page()
    link = stack.sign_in_link("duty-li", "viewer")
    by_link.goto(link.replace("/signin#", f"/signin?{urlencode({'next': elsewhere})}#"))
    for page in (by_provider, by_link):
        expect(page.locator("#connection")).to_have_text("live")
        assert urlsplit(page.url).netloc == urlsplit(stack.console.url).netloc, page.url
