"""A test that requests a view's URL refers to the view: test-only views go with their tests (``_routes``).

Before/after trees: a cold view that only a test requests is ``test-only`` and
goes together with that test; a test that also requests a live view keeps it,
saying so; and which requested URLs reach which patterns, one row each.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_plan_levels import after, src, tree

from coldmod_codemod import plan_removal
from coldmod_codemod._rules import REVIEW, SAFE, TEST_ONLY, UNSAFE, URL

pytestmark = pytest.mark.timeout(120)

TEST_LEVEL = (SAFE, TEST_ONLY)
REVIEW_LEVEL = (SAFE, TEST_ONLY, REVIEW)


def write(root: Path, plan) -> None:  # type: ignore[no-untyped-def]
    for edit in plan.edits:
        (root / edit.path).write_bytes(edit.new)


def pytest_in(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "tests"],
        cwd=root, capture_output=True, text=True, timeout=120,
    )


# -- a real Flask app: a cold view, its test, and a blueprint -----------------------------------------------------

FLASK_APP = {
    "shop/__init__.py": """
        from flask import Flask


        def create_app():
            app = Flask(__name__)

            @app.route("/")
            def index():
                return "index"

            @app.route("/hello")
            def hello():
                return greeting()

            from shop import auth

            app.register_blueprint(auth.bp)
            return app


        def greeting():
            return "Hello, World!"
    """,
    "shop/auth.py": """
        from flask import Blueprint

        bp = Blueprint("auth", __name__, url_prefix="/auth")


        @bp.route("/login")
        def login():
            return "login"


        @bp.route("/logout")
        def logout():
            return "logout"


        @bp.route("/")
        def home():
            return "auth home"
    """,
    "tests/conftest.py": """
        import pytest

        from shop import create_app


        @pytest.fixture
        def client():
            return create_app().test_client()
    """,
    "tests/test_shop.py": """
        def test_index(client):
            assert client.get("/").data == b"index"


        def test_hello(client):
            response = client.get("/hello")
            assert response.data == b"Hello, World!"


        def test_login(client):
            assert client.get("/auth/login").data == b"login"


        def test_login_then_logout(client):
            assert client.get("/auth/login?next=/").data == b"login"
            assert client.get("http://localhost/auth/logout").data == b"logout"
    """,
}
HELLO = "shop.create_app.<locals>.hello"


def test_a_cold_view_only_a_test_requests_is_test_only_with_the_request_as_its_reason(tmp_path: Path) -> None:
    root = tree(tmp_path, FLASK_APP)
    plan = plan_removal(root, [HELLO, "shop.greeting"])
    hello = plan.verdicts[HELLO]
    assert (hello.verdict, hello.removed) == (TEST_ONLY, False)
    assert "tests/test_shop.py:6 url GET /hello (in a test)" in hello.reasons
    assert not any("decorator" in r for r in hello.reasons)  # the route is understood: its requests reach it
    assert [g.name for g in hello.groups] == ["tests"]
    assert any(p.kind == URL and p.referrer == "tests.test_shop.test_hello" for p in hello.groups[0].places)


def test_include_test_only_removes_the_view_with_its_test_and_the_suite_still_passes(tmp_path: Path) -> None:
    root = tree(tmp_path, FLASK_APP)
    assert pytest_in(root).returncode == 0
    plan = plan_removal(root, [HELLO, "shop.greeting"], include=TEST_LEVEL)
    assert plan.removed == [HELLO, "shop.greeting"]  # greeting: only the view called it
    assert plan.tests == ("tests.test_shop.test_hello",)
    assert after(plan)["tests/test_shop.py"] == src('''
        def test_index(client):
            assert client.get("/").data == b"index"


        def test_login(client):
            assert client.get("/auth/login").data == b"login"


        def test_login_then_logout(client):
            assert client.get("/auth/login?next=/").data == b"login"
            assert client.get("http://localhost/auth/logout").data == b"logout"
    ''')
    assert "def hello" not in after(plan)["shop/__init__.py"]
    write(root, plan)
    tests = pytest_in(root)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout


def test_at_safe_a_view_a_test_requests_stays(tmp_path: Path) -> None:
    root = tree(tmp_path, FLASK_APP)
    plan = plan_removal(root, [HELLO], levels=[TEST_LEVEL, REVIEW_LEVEL])
    assert plan.removed == []
    assert plan.levels == {SAFE: (), TEST_ONLY: (HELLO,), REVIEW: (HELLO,)}


def test_a_test_that_also_requests_a_live_view_keeps_the_cold_one_and_says_why(tmp_path: Path) -> None:
    root = tree(tmp_path, FLASK_APP)
    plan = plan_removal(root, ["shop.auth.logout"], include=REVIEW_LEVEL)
    logout = plan.verdicts["shop.auth.logout"]
    assert (logout.verdict, logout.removed) == (TEST_ONLY, False)  # the blueprint's prefix: /auth/logout
    assert "tests/test_shop.py:16 url GET http://localhost/auth/logout (in a test)" in logout.reasons
    assert "tests.test_shop.test_login_then_logout stays: it also requests GET /auth/login?next=/ " \
        "(tests/test_shop.py:15), whose view shop.auth.login stays" in logout.reasons
    assert plan.edits == ()


def test_a_route_of_slash_alone_is_not_reached_by_every_url(tmp_path: Path) -> None:
    root = tree(tmp_path, FLASK_APP)
    plan = plan_removal(root, ["shop.auth.home"])
    home = plan.verdicts["shop.auth.home"]
    assert not any(r.kind == URL for r in home.references)  # /auth/ is requested by no test
    assert home.verdict == REVIEW  # an unrequested route keeps its decorator's rule


def test_both_cold_views_of_one_test_go_together(tmp_path: Path) -> None:
    root = tree(tmp_path, FLASK_APP)
    keys = ["shop.auth.login", "shop.auth.logout"]
    plan = plan_removal(root, keys, include=TEST_LEVEL)
    assert plan.removed == keys
    assert plan.tests == ("tests.test_shop.test_login", "tests.test_shop.test_login_then_logout")
    write(root, plan)
    tests = pytest_in(root)
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_a_view_the_tests_register_themselves_is_not_live_code(tmp_path: Path) -> None:
    files = dict(FLASK_APP)
    files["tests/conftest.py"] = """
        import pytest

        from shop import create_app


        @pytest.fixture
        def client():
            app = create_app()

            @app.route("/ping")
            def ping():
                return "pong"

            return app.test_client()
    """
    files["tests/test_shop.py"] = FLASK_APP["tests/test_shop.py"].replace(
        'response = client.get("/hello")',
        'assert client.get("/ping").data == b"pong"\n            response = client.get("/hello")',
    )
    root = tree(tmp_path, files)
    plan = plan_removal(root, [HELLO], include=TEST_LEVEL)
    assert plan.removed == [HELLO]
    assert plan.tests == ("tests.test_shop.test_hello",)
    write(root, plan)
    tests = pytest_in(root)
    assert tests.returncode == 0, tests.stdout + tests.stderr


# -- other frameworks ------------------------------------------------------------------------------------------

FASTAPI_APP = {
    "api/__init__.py": "",
    "api/main.py": """
        from fastapi import APIRouter, FastAPI

        app = FastAPI()
        router = APIRouter(prefix="/items")


        @app.get("/health")
        def health():
            return {"ok": True}


        @router.get("/{item_id}")
        def read_item(item_id: int):
            return {"id": item_id}


        @router.api_route("/{item_id}/files/{path:path}", methods=["GET"])
        def item_file(item_id: int, path: str):
            return {"path": path}


        app.include_router(router)
    """,
    "tests/test_api.py": """
        from fastapi.testclient import TestClient

        from api.main import app

        client = TestClient(app)


        def test_read_item():
            item = 3
            assert client.get(f"/items/{item}").json() == {"id": item}


        def test_item_file():
            assert client.get("/items/3/files/a/b.txt").status_code == 200
    """,
}


def test_fastapi_decorators_router_prefix_parameters_and_f_strings(tmp_path: Path) -> None:
    root = tree(tmp_path, FASTAPI_APP)
    plan = plan_removal(root, ["api.main.read_item", "api.main.item_file", "api.main.health"], include=TEST_LEVEL)
    read, files, health = (plan.verdicts[k] for k in ("api.main.read_item", "api.main.item_file", "api.main.health"))
    assert "tests/test_api.py:10 url GET /items/{…} (in a test)" in read.reasons
    # f"/items/{item}" may be /items/3/files/x too: a placeholder may hold slashes (towards matching)
    assert [r.detail for r in files.references if r.kind == URL] == ["GET /items/{…}", "GET /items/3/files/a/b.txt"]
    assert (read.verdict, files.verdict) == (TEST_ONLY, TEST_ONLY)
    assert plan.removed == ["api.main.read_item", "api.main.item_file"]
    assert plan.tests == ("tests.test_api.test_item_file", "tests.test_api.test_read_item")
    assert (health.verdict, health.removed) == (REVIEW, False)  # no test requests /health
    assert after(plan)["tests/test_api.py"] == src('''
        from fastapi.testclient import TestClient

        from api.main import app

        client = TestClient(app)
    ''')


DJANGO_APP = {
    "site_app/__init__.py": "",
    "site_app/views.py": """
        from django.http import HttpResponse


        def article(request, slug):
            return HttpResponse(slug)


        def archive(request, year):
            return HttpResponse(year)
    """,
    "site_app/urls.py": """
        from django.urls import path, re_path

        from site_app import views

        urlpatterns = [
            path("articles/<slug:slug>/", views.article, name="article"),
            re_path(r"^archive/(?P<year>[0-9]{4})/$", views.archive),
        ]
    """,
    "site_app/tests.py": """
        from django.test import SimpleTestCase
        from django.urls import reverse


        class ViewsTest(SimpleTestCase):
            def test_article(self):
                self.client.get(reverse("blog:article", args=["x"]))

            def test_archive(self):
                self.client.get("/blog/archive/1999/")
    """,
}


def test_django_urls_name_the_view_from_live_code_and_tests_request_it_too(tmp_path: Path) -> None:
    # urls.py names the views at module level: a live reference, so they stay unsafe whatever the tests do.
    root = tree(tmp_path, DJANGO_APP)
    plan = plan_removal(root, ["site_app.views.article", "site_app.views.archive"], include=REVIEW_LEVEL)
    article, archive = plan.verdicts["site_app.views.article"], plan.verdicts["site_app.views.archive"]
    assert (article.verdict, archive.verdict) == (UNSAFE, UNSAFE)
    assert plan.removed == []
    assert plan.edits == ()
    assert "site_app/tests.py:7 url reverse('blog:article') (in a test)" in article.reasons
    assert "site_app/tests.py:10 url GET /blog/archive/1999/ (in a test)" in archive.reasons  # below an include()
    assert [g.name for g in article.groups][:2] == ["live", "tests"]


# -- which requested URLs reach which patterns --------------------------------------------------------------------

# (the view's registration, the test's request, whether it reaches the view)
MATCHES = [
    ('@app.route("/hello")', '"/hello"', True),
    ('@app.route("/hello")', '"/hello/"', True),  # a trailing slash does not count
    ('@app.route("/hello/")', '"/hello"', True),
    ('@app.route("/hello")', '"/hello?x=1#top"', True),
    ('@app.route("/hello")', '"https://example.com/hello"', True),
    ('@app.route("/hello")', '"/mounted/hello"', True),  # an unresolved prefix (register_blueprint, a mount)
    ('@app.route("/hello")', '"/hello/world"', False),
    ('@app.route("/hello")', '"/xhello"', False),
    ('@app.route("/hello")', '"hello"', False),  # not a URL
    ('@app.route("/hello")', '"see /hello"', False),  # prose
    ('@app.route("/")', '"/hello"', False),  # "/" alone matches only "/"
    ('@app.route("/")', '"/"', True),
    ('@app.route("/")', 'location == "/"', False),  # an expectation, not a request
    ('@app.route("/")', 'client.assertEqual(location, "/")', False),
    ('@app.route("/")', 'client.assertEqual(client.get("/").status_code, 200)', True),
    ('@app.route("/<name>")', '"/a/b"', False),  # parameters alone match only exactly
    ('@app.route("/<name>")', '"/a"', True),
    ('@app.route("/post/<int:id>/edit")', '"/post/7/edit"', True),
    ('@app.route("/post/<int:id>/edit")', '"/post/7/delete"', False),
    ('@app.route("/files/<path:p>")', '"/files/a/b/c"', True),
    ('@app.route("/files/<p>")', '"/files/a/b/c"', False),
    ('@app.get("/items/{id}")', '"/items/3"', True),
    ('@app.get("/items/{p:path}")', '"/items/3/4"', True),
    ('@app.route("/simple/:project/")', '"/simple/foo/"', True),  # Bottle's old style
    ('@app.route("/packages/:filename#.*#")', '"/packages/a/b.zip"', True),
    ('@app.route("/bytes/<int:n>")', 'f"/bytes/{n}"', True),
    ('@app.route("/bytes/<int:n>")', '"/bytes/%d" % n', True),
    ('@app.route("/d/<a>/<b>/<c>")', '"/d/{0}/{1}/{2}".format(a, b, c)', True),
    ('@app.route("/d/<a>/<b>/<c>/<e>")', '"/d/{0}/{1}".format(a, b)', True),  # extended later, maybe
    ('@app.route("/hello")', 'f"/d/{n}"', False),  # a placeholder is not a mount point
    ('@app.route("/hello")', '"/" + n', False),  # a path joined: names no route
    ('@app.route("/hello")', 'f"{base}/hello"', True),  # the placeholder is the host
    ('@app.route("/hello")', 'url_for("hello")', True),
    ('@app.route("/hello")', 'url_for("bp.hello")', True),
    ('@app.route("/hello", endpoint="greet")', 'url_for("greet")', True),
    ('@app.route("/hello")', 'url_for("other")', False),
]


@pytest.mark.parametrize(("registration", "request_", "reaches"), MATCHES)
def test_which_requests_reach_a_route(tmp_path: Path, registration: str, request_: str, reaches: bool) -> None:
    root = tree(tmp_path, {
        "web/__init__.py": "",
        "web/views.py": f"""
            from framework import app


            {registration}
            def hello():
                return "hi"
        """,
        "tests/test_web.py": f"""
            def test_it(client, n=1, a=1, b=2, c=3, base="", location=""):
                client.get({request_})
        """,
    })
    plan = plan_removal(root, ["web.views.hello"])
    found = [r for r in plan.verdicts["web.views.hello"].references if r.kind == URL]
    assert bool(found) == reaches, found


# (a registration call after the view, the test's request, whether it reaches the view)
REGISTRATIONS = [
    ('app.add_url_rule("/hello", view_func=hello)', '"/hello"', True),
    ('app.add_url_rule("/hello", "greet", hello)', 'url_for("greet")', True),
    ('app.add_url_rule("/bye", "greet", hello)', '"/hello"', False),
    ('routes = [Route("/hello", hello)]', '"/hello"', True),
    ('routes = [Route("/hello", endpoint=hello, name="greet")]', 'request.url_for("greet")', True),
    ('app.add_api_route("/items/{id}", hello)', 'f"/items/{n}"', True),
    ('app.router.add_route("GET", "/hello", hello)', '"/hello"', True),
    ('urlpatterns = [path("hello/<int:n>/", hello)]', '"/app/hello/3/"', True),  # below an include()
    ('urlpatterns = [path("hello/<int:n>/", hello)]', '"/hello/3/4/"', False),
    ('urlpatterns = [path("", hello)]', '"/"', True),
    ('urlpatterns = [path("", hello)]', '"/other/"', False),  # an empty pattern matches only exactly
    ('urlpatterns = [re_path(r"^hello/(?P<n>[0-9]+)/$", hello, name="hi")]', '"/hello/12/"', True),
    ('urlpatterns = [re_path(r"^hello/(?P<n>[0-9]+)/$", hello, name="hi")]', 'reverse("app:hi")', True),
    ('urlpatterns = [re_path(r"^hello/$", hello)]', '"/goodbye/"', False),
]


@pytest.mark.parametrize(("registration", "request_", "reaches"), REGISTRATIONS)
def test_which_requests_reach_a_registration_call(
    tmp_path: Path, registration: str, request_: str, reaches: bool
) -> None:
    root = tree(tmp_path, {
        "web/__init__.py": "",
        "web/views.py": f"""
            from framework import Route, app, path, re_path


            def hello(request=None, n=0):
                return "hi"


            {registration}
        """,
        "tests/test_web.py": f"""
            def test_it(client, request, n=1):
                client.get({request_})
        """,
    })
    plan = plan_removal(root, ["web.views.hello"])
    found = [r for r in plan.verdicts["web.views.hello"].references if r.kind == URL]
    assert bool(found) == reaches, found
