"""rm --cold on a real Flask app: a cold view that only a test requests by URL goes with that test.

The heatmap is what a tracer reports for the app's traffic (the index and the
login view are hot); the app's own tests are run with pytest before and after.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import git, traced

pytestmark = pytest.mark.timeout(120)

FILES = {
    "coldmod.rootmarker": '[app]\nname = "flaskapp"\n',
    "flaskapp/__init__.py": """
        from flask import Flask


        def create_app():
            app = Flask(__name__)

            @app.route("/")
            def index():
                return "index"

            @app.route("/hello")
            def hello():
                return greeting()

            from flaskapp import auth

            app.register_blueprint(auth.bp)
            return app


        def greeting():
            return "Hello, World!"
    """,
    "flaskapp/auth.py": """
        from flask import Blueprint

        bp = Blueprint("auth", __name__, url_prefix="/auth")


        @bp.route("/login")
        def login():
            return "login"


        @bp.route("/logout")
        def logout():
            return "logout"
    """,
    "tests/conftest.py": """
        import pytest

        from flaskapp import create_app


        @pytest.fixture
        def client():
            return create_app().test_client()
    """,
    "tests/test_app.py": """
        def test_index(client):
            assert client.get("/").data == b"index"


        def test_hello(client):
            response = client.get("/hello")
            assert response.data == b"Hello, World!"


        def test_logout(client):
            client.get("/auth/login")
            assert client.get("/auth/logout").data == b"logout"
    """,
}
HOT = {"flaskapp.create_app": 3, "flaskapp.create_app.<locals>.index": 5, "flaskapp.auth.login": 2}


@pytest.fixture
def flaskapp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "flaskapp"
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "flaskapp")
    monkeypatch.chdir(root)
    return root


def _pytest(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                          capture_output=True, text=True, timeout=120)


def test_a_view_only_a_test_requests_goes_with_that_test_and_the_suite_passes(cli, flaskapp, insecure_env):
    assert _pytest(flaskapp).returncode == 0
    traced(insecure_env.address, flaskapp, HOT)

    dry = cli("rm", "--cold", "--dry-run", "--min-tracked", "0s")
    assert dry.code == 0, dry.err
    lines = dry.out.splitlines()
    hello = lines.index("test-only flaskapp.create_app.<locals>.hello")
    assert lines[hello + 1] == (
        "          from tests (1): tests/test_app.py:6 url GET /hello in tests.test_app.test_hello")
    assert "test-only flaskapp.auth.logout" in lines
    assert "--include test-only would remove 2 more" in dry.err  # hello, and greeting that only it calls
    as_json = cli("rm", "--cold", "--dry-run", "--min-tracked", "0s", "--format", "json")
    verdicts = {v["key"]: v for v in json.loads(as_json.out)["verdicts"]}
    (site,) = verdicts["flaskapp.create_app.<locals>.hello"]["groups"][0]["sites"]
    assert (site["kind"], site["detail"], site["in"]) == ("url", "GET /hello", "tests.test_app.test_hello")

    result = cli("rm", "--cold", "--min-tracked", "0s", "--include", "test-only")

    assert result.code == 0, result.err
    assert "removed 2 functions and 1 test function" in result.err
    assert "def hello" not in (flaskapp / "flaskapp" / "__init__.py").read_text()
    assert "def test_hello" not in (flaskapp / "tests" / "test_app.py").read_text()
    assert "def logout" in (flaskapp / "flaskapp" / "auth.py").read_text()  # its test requests a live view too
    lines = result.out.splitlines()
    logout = lines.index("test-only flaskapp.auth.logout")
    assert lines[logout + 2] == (
        "          tests.test_app.test_logout stays: it also requests GET /auth/login (tests/test_app.py:11), "
        "whose view flaskapp.auth.login stays")
    tests = _pytest(flaskapp)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout
