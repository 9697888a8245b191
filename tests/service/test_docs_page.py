"""``/docs`` works with no network, and the OpenAPI document says what the routes really answer."""

from __future__ import annotations

import re
from typing import Any

from tests.fixtures.browser import headless_chromium
from tests.service.conftest import InProcess

URL = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


def test_the_docs_page_and_its_assets_are_served_by_the_server(in_process: InProcess) -> None:
    client = in_process.client
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "connect-src 'self'" in csp
    html = page.text
    assert "://" not in html  # no CDN, no absolute URL of any kind
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []  # no inline script: the CSP holds
    links = URL.findall(html)
    assert links == [
        "docs/assets/swagger-ui.css",
        "docs/assets/favicon.png",
        "docs/assets/swagger-ui-bundle.js",
        "docs/docs.js",
    ]
    sizes = {}
    for link in links:
        r = client.get("/" + link)
        assert r.status_code == 200, link
        sizes[link] = len(r.content)
    assert sizes["docs/assets/swagger-ui-bundle.js"] > 1_000_000  # the real Swagger UI, not a stub
    assert "validatorUrl: null" in client.get("/docs/docs.js").text  # the badge would call a remote service


def test_the_document_declares_problem_json_for_every_error_and_no_422(in_process: InProcess) -> None:
    doc = in_process.client.get("/openapi.json").json()
    with_422 = [
        (m, p) for p, ops in doc["paths"].items() for m, op in ops.items() if "422" in op["responses"]
    ]
    assert with_422 == [] and "HTTPValidationError" not in doc["components"]["schemas"]
    assert set(doc["components"]["schemas"]["Problem"]["required"]) >= {"type", "title", "status", "detail"}
    errors = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            statuses = {int(s) for s in op["responses"]}
            if op["x-govflow-permissions"]:
                assert {400, 401, 403} <= statuses, (method, path)
                assert op["security"] == [{"bearer": []}]
            if "requestBody" in op:
                assert 413 in statuses, (method, path)
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    errors += 1
                    schema = response["content"]["application/problem+json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, status)
    assert errors > 200


def test_a_request_of_the_wrong_shape_is_the_400_the_document_declares(in_process: InProcess) -> None:
    auth = {"Authorization": f"Bearer {in_process.tokens['pipeline']}"}
    r = in_process.client.post("/api/v1/events", json={"action": 3}, headers=auth)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["govflow_error"] == "InvalidInput"



def test_swagger_ui_renders_every_route_offline_in_headless_chromium(server_harness: Any) -> None:
    """The page, over real HTTP, with every request off this server refused."""
    base = server_harness.url
    operations = sum(len(ops) for ops in server_harness.app.openapi()["paths"].values())
    blocked: list[str] = []
    problems: list[str] = []
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        def only_this_server(route: Any) -> None:
            if route.request.url.startswith(base + "/"):
                route.continue_()
                return
            blocked.append(route.request.url)
            route.abort()

        page.route("**/*", only_this_server)
        page.goto(base + "/docs", wait_until="load")
        page.wait_for_selector(".opblock", timeout=20_000)
        assert page.locator(".opblock").count() == operations
        assert page.locator(".info .title").inner_text().startswith("govflow registry")
    assert blocked == [] and problems == []
