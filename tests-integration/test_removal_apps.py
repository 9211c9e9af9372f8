"""Acceptance of `coldmod rm --cold` on real code: flaskr, a Django app, a real library (issue 10).

Each test traces the real thing in the production configuration (a TLS + API
key collector, `coldmod-trace run`, a real server forking workers, real HTTP
requests, SIGTERM at the end), removes the cold functions with `coldmod rm
--cold`, then checks that nothing production did changed: the app's own tests
pass and every request served while tracing gets the same status again; for
the library, its test suite passes and ruff (F821, F401) and mypy find nothing
new. The verdicts must be true for this to hold: a "safe" that is not true
breaks a page, a test or a type check here.

Pinned: Flask 3.1.0 (flaskr is its sdist's examples/tutorial), gunicorn
23.0.0, Django 5.1.4, itsdangerous 2.2.0 (sdist with its tests), mypy 1.13.0,
ruff 0.8.4 — installed by noxfile.TEST_DEPS; the sdists are downloaded from
the package index into a temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from pathlib import Path

import pytest
from removal_fixtures import (
    BIN,
    Browser,
    Collector,
    Process,
    cold_keys,
    git_commit,
    remove_cold,
    run,
    sdist,
    start_collector,
    wait_for_app,
    wait_for_calls,
)

pytestmark = pytest.mark.timeout(600)

#: Trace every call (cold detection is exact in both modes; exact keeps the counts simple to assert).
TRACE_ENV = {"COLDMOD_MODE": "exact", "COLDMOD_FLUSH_INTERVAL": "0.2"}

#: Appended to a module of the library, flaskr and the Django app: unreferenced by anything, so safe to remove.
DEAD_FUNCTION = """

def legacy_b64_checksum(data: bytes) -> int:
    import zlib

    return zlib.crc32(data) & 0xFFFFFFFF
"""


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the sdists are downloaded (once per run)."""
    return tmp_path_factory.mktemp("sdists")


@pytest.fixture
def collector(tmp_path: Path):
    """A TLS + API key collector for one test."""
    directory = tmp_path / "collector"
    directory.mkdir()
    server = start_collector(directory)
    yield server
    server.process.stop()


def gunicorn(app_spec: str, cwd: Path, env: dict[str, str], *, traced: bool) -> tuple[Process, str]:
    """gunicorn with two forked workers on a free port (under `coldmod-trace run` when ``traced``); its URL."""
    argv: list[str | Path] = [BIN / "gunicorn", "-w", "2", "-b", "127.0.0.1:0", "--graceful-timeout", "5", app_spec]
    if traced:
        argv = [BIN / "coldmod-trace", "run", "--", *argv]
    server = Process(argv, cwd=cwd, env=env | (TRACE_ENV if traced else {}))
    base = server.wait_for(r"Listening at: (http://\S+)").group(1)
    server.wait_for(r"Booting worker with pid")
    return server, base


# ------------------------------------------------------------------ flaskr

#: Appended to flaskr/blog.py: a helper only the tests use (issue 18's test-only).
TEST_ONLY_HELPER = """

def title_slug(title):
    return "-".join(title.lower().split())
"""
#: Appended to flaskr's tests/test_blog.py and tests/conftest.py: the test and the fixture that exist only for it.
TEST_ONLY_TEST = """

from flaskr.blog import title_slug  # noqa: E402


def test_title_slug(slugged):
    assert title_slug("Hello World") == "hello-world"
    assert slugged == "a-title"
"""
TEST_ONLY_FIXTURE = """

@pytest.fixture
def slugged():
    from flaskr.blog import title_slug

    return title_slug("A Title")
"""


def flaskr_traffic(base: str) -> list[tuple[str, str, int]]:
    """What a visitor does on flaskr: register, log in, write a post, open its edit page (never delete)."""
    visitor = Browser(base)
    visitor.request("/hello")
    visitor.request("/auth/register")
    visitor.request("/auth/register", {"username": "ada", "password": "lovelace"})
    visitor.request("/auth/login")
    visitor.request("/auth/login", {"username": "ada", "password": "lovelace"})
    visitor.request("/")
    visitor.request("/create")
    visitor.request("/create", {"title": "first", "body": "hello"})
    for _ in range(3):
        visitor.request("/1/update")  # its template names blog.delete through url_for
    visitor.request("/1/update", {"title": "first!", "body": "hello again"})
    visitor.request("/")
    visitor.request("/no-such-page")
    return visitor.log


def test_flaskr_under_gunicorn(collector: Collector, downloads: Path, tmp_path: Path) -> None:
    source = sdist("flask", "3.1.0", downloads) / "examples" / "tutorial"
    app = tmp_path / "flaskr-app"
    shutil.copytree(source, app)
    with (app / "flaskr" / "blog.py").open("a") as handle:
        handle.write(DEAD_FUNCTION + TEST_ONLY_HELPER)  # something safe to remove, and something only tests use
    with (app / "tests" / "test_blog.py").open("a") as handle:
        handle.write(TEST_ONLY_TEST)
    with (app / "tests" / "conftest.py").open("a") as handle:
        handle.write(TEST_ONLY_FIXTURE)
    env = collector.env
    assert collector.coldmod("init", cwd=app).returncode == 0
    git_commit(app, "flaskr as released, plus one dead function")
    run(BIN / "flask", "--app", "flaskr", "init-db", cwd=app, env=env, check=True)  # untraced setup

    server, base = gunicorn("flaskr:create_app()", app, env, traced=True)
    try:
        wait_for_app(collector, app)
        served = flaskr_traffic(base)
    finally:
        assert server.stop() == 0, "".join(server.lines)
    assert [status for *_, status in served] == [200, 200, 302, 200, 302, 200, 200, 302, 200, 200, 200, 302, 200, 404]
    functions = wait_for_calls(collector, app, "flaskr.blog.update")
    assert functions["flaskr.blog.update"]["calls"] == 4
    cold = cold_keys(collector, app)
    assert {"flaskr.blog.delete", "flaskr.auth.logout", "flaskr.db.init_db_command"} <= cold
    assert not any(key.startswith("tests.") for key in functions)  # test code is never traced

    dry = collector.coldmod("rm", "--cold", "--min-tracked", "0s", "--dry-run", cwd=app)
    assert dry.returncode == 0, dry.stderr
    assert "would remove 1 function from 1 file" in dry.stderr
    more = re.search(r"--include test-only would remove (\d+) more, --include review (\d+) more", dry.stderr)
    assert more is not None, dry.stderr
    removed = remove_cold(collector, app)
    assert "safe    flaskr.blog.legacy_b64_checksum" in removed.stdout, removed.stdout
    assert "legacy_b64_checksum" not in (app / "flaskr" / "blog.py").read_text()
    assert "test-only flaskr.blog.title_slug" in removed.stdout, removed.stdout
    assert "title_slug" in (app / "flaskr" / "blog.py").read_text()
    git_commit(app, "the safe removal")

    # Only tests use title_slug: with --include test-only it goes with its test and fixture, and nothing else
    # than the dry run announced.
    with_tests = collector.coldmod("rm", "--cold", "--min-tracked", "0s", "--include", "test-only", cwd=app)
    assert with_tests.returncode == 0, with_tests.stdout + with_tests.stderr
    assert int(more.group(1)) == 1
    assert "removed 1 function and 2 test functions from 3 files (1 test-only among them)" in with_tests.stderr
    for path in ("flaskr/blog.py", "tests/test_blog.py", "tests/conftest.py"):
        assert "title_slug" not in (app / path).read_text(), path
    assert "def slugged" not in (app / "tests" / "conftest.py").read_text()

    # Reached without a call during tracing: delete through url_for in a template, the CLI command by click.
    remaining = collector.coldmod("srcs", cwd=app).stdout
    for kept in ("flaskr.blog.delete", "flaskr.db.init_db_command", "flaskr.db.init_db", "flaskr.db.close_db"):
        assert kept in remaining, removed.stdout + removed.stderr
    tests = run(BIN / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=app, env=env)
    assert tests.returncode == 0, tests.stdout + removed.stdout
    (app / "instance" / "flaskr.sqlite").unlink()
    run(BIN / "flask", "--app", "flaskr", "init-db", cwd=app, env=env, check=True)
    plain, base = gunicorn("flaskr:create_app()", app, env, traced=False)
    try:
        assert flaskr_traffic(base) == served
    finally:
        plain.stop()


# ------------------------------------------------------------------ Django

DJANGO_FILES = {
    "mysite/__init__.py": "",
    "mysite/settings.py": """
        from pathlib import Path

        BASE_DIR = Path(__file__).resolve().parent.parent
        SECRET_KEY = "acceptance-only"
        DEBUG = False
        ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
        INSTALLED_APPS = [
            "polls.apps.PollsConfig",
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
        ]
        MIDDLEWARE = [
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ]
        ROOT_URLCONF = "mysite.urls"
        TEMPLATES = [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [],
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ]
        WSGI_APPLICATION = "mysite.wsgi.application"
        DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
        USE_TZ = True
        STATIC_URL = "static/"
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
    """,
    "mysite/urls.py": """
        from django.contrib import admin
        from django.urls import include, path

        urlpatterns = [
            path("polls/", include("polls.urls")),
            path("admin/", admin.site.urls),
        ]
    """,
    "mysite/wsgi.py": """
        import os

        from django.core.wsgi import get_wsgi_application

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
        application = get_wsgi_application()
    """,
    "manage.py": """
        import os
        import sys


        def main():
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
            from django.core.management import execute_from_command_line

            execute_from_command_line(sys.argv)


        if __name__ == "__main__":
            main()
    """,
    "polls/__init__.py": "",
    "polls/apps.py": """
        from django.apps import AppConfig


        class PollsConfig(AppConfig):
            default_auto_field = "django.db.models.BigAutoField"
            name = "polls"

            def ready(self):
                from . import signals  # noqa: F401  (connects the receivers)
    """,
    "polls/models.py": """
        import datetime

        from django.db import models
        from django.utils import timezone


        class Question(models.Model):
            question_text = models.CharField(max_length=200)
            pub_date = models.DateTimeField("date published")
            closed = models.BooleanField(default=False)

            def __str__(self):
                return self.question_text

            def was_published_recently(self):
                now = timezone.now()
                return now - datetime.timedelta(days=1) <= self.pub_date <= now

            def total_votes(self):
                return sum(choice.votes for choice in self.choice_set.all())


        class Choice(models.Model):
            question = models.ForeignKey(Question, on_delete=models.CASCADE)
            choice_text = models.CharField(max_length=200)
            votes = models.IntegerField(default=0)

            def __str__(self):
                return self.choice_text
    """,
    "polls/signals.py": """
        from django.db.models.signals import post_delete, post_save
        from django.dispatch import receiver

        from .models import Choice, Question

        LOG = []


        @receiver(post_save, sender=Question)
        def question_saved(sender, instance, created, **kwargs):
            LOG.append(("saved", instance.pk))


        @receiver(post_delete, sender=Choice)
        def choice_deleted(sender, instance, **kwargs):
            LOG.append(("deleted", instance.pk))
    """,
    "polls/admin.py": """
        from django.contrib import admin

        from .models import Choice, Question


        @admin.register(Question)
        class QuestionAdmin(admin.ModelAdmin):
            list_display = ["question_text", "pub_date", "votes"]

            @admin.display(description="votes")
            def votes(self, obj):
                return obj.total_votes()


        admin.site.register(Choice)
    """,
    "polls/templatetags/__init__.py": "",
    "polls/templatetags/poll_extras.py": """
        from django import template

        register = template.Library()


        @register.filter
        def shout(value):
            return str(value).upper()


        @register.simple_tag
        def vote_label(choice):
            return f"{choice.choice_text} ({choice.votes})"
    """,
    "polls/views.py": """
        from django.http import HttpResponseRedirect
        from django.shortcuts import get_object_or_404, render
        from django.urls import reverse
        from django.views import View, generic

        from .models import Choice, Question


        def index(request):
            latest = Question.objects.order_by("-pub_date")[:5]
            return render(request, "polls/index.html", {"latest_question_list": latest})


        class DetailView(generic.DetailView):
            model = Question
            template_name = "polls/detail.html"


        class ResultsView(View):
            def get(self, request, pk):
                question = get_object_or_404(Question, pk=pk)
                return render(request, "polls/results.html", {"question": question})

            def delete(self, request, pk):
                get_object_or_404(Question, pk=pk).delete()
                return HttpResponseRedirect(reverse("polls:index"))


        def vote(request, question_id):
            question = get_object_or_404(Question, pk=question_id)
            try:
                selected = question.choice_set.get(pk=request.POST["choice"])
            except (KeyError, Choice.DoesNotExist):
                return render(request, "polls/detail.html", {"question": question, "error_message": "no choice"})
            selected.votes += 1
            selected.save()
            return HttpResponseRedirect(reverse("polls:results", args=(question.id,)))
    """,
    "polls/urls.py": """
        from django.urls import path

        from . import views

        app_name = "polls"
        urlpatterns = [
            path("", views.index, name="index"),
            path("<int:pk>/", views.DetailView.as_view(), name="detail"),
            path("<int:pk>/results/", views.ResultsView.as_view(), name="results"),
            path("<int:question_id>/vote/", views.vote, name="vote"),
        ]
    """,
    "polls/templates/polls/index.html": """
        {% load poll_extras %}
        <ul>{% for question in latest_question_list %}
          <li><a href="{% url 'polls:detail' question.id %}">{{ question.question_text|shout }}</a></li>
        {% endfor %}</ul>
    """,
    "polls/templates/polls/detail.html": """
        <h1>{{ question.question_text }}</h1>
        {% if question.was_published_recently %}<p>new</p>{% endif %}
        {% if error_message %}<p>{{ error_message }}</p>{% endif %}
        <form action="{% url 'polls:vote' question.id %}" method="post">{% csrf_token %}
        {% for choice in question.choice_set.all %}
          <input type="radio" name="choice" value="{{ choice.id }}">{{ choice.choice_text }}
        {% endfor %}
        </form>
    """,
    "polls/templates/polls/results.html": """
        {% load poll_extras %}
        <h1>{{ question.question_text }}</h1>
        <ul>{% for choice in question.choice_set.all %}<li>{% vote_label choice %}</li>{% endfor %}</ul>
        <p>{{ question.total_votes }} votes</p>
    """,
    "polls/management/__init__.py": "",
    "polls/management/commands/__init__.py": "",
    "polls/management/commands/closepolls.py": """
        from django.core.management.base import BaseCommand

        from polls.models import Question


        class Command(BaseCommand):
            help = "Close every poll."

            def add_arguments(self, parser):
                parser.add_argument("--dry-run", action="store_true")

            def handle(self, *args, **options):
                if not options["dry_run"]:
                    Question.objects.update(closed=True)
                self.stdout.write("closed")
    """,
    "polls/management/commands/seedpolls.py": """
        from django.core.management.base import BaseCommand
        from django.utils import timezone

        from polls.models import Question


        class Command(BaseCommand):
            help = "Create the first poll."

            def handle(self, *args, **options):
                question = Question.objects.create(question_text="Tea or coffee?", pub_date=timezone.now())
                question.choice_set.create(choice_text="tea")
                question.choice_set.create(choice_text="coffee")
    """,
    "polls/tests.py": """
        from django.core.management import call_command
        from django.test import TestCase
        from django.urls import reverse
        from django.utils import timezone

        from .models import Question
        from .signals import LOG


        class PollsTests(TestCase):
            def setUp(self):
                self.question = Question.objects.create(question_text="Why?", pub_date=timezone.now())
                self.choice = self.question.choice_set.create(choice_text="because")

            def test_index_shouts(self):
                self.assertContains(self.client.get(reverse("polls:index")), "WHY?")

            def test_results_and_votes(self):
                self.client.post(reverse("polls:vote", args=(self.question.id,)), {"choice": self.choice.id})
                self.assertContains(self.client.get(reverse("polls:results", args=(self.question.id,))), "1 votes")

            def test_closepolls_command(self):
                call_command("closepolls")
                self.question.refresh_from_db()
                self.assertTrue(self.question.closed)

            def test_signals_fire(self):
                pk = self.choice.pk
                self.choice.delete()
                self.assertIn(("deleted", pk), LOG)
                self.assertIn(("saved", self.question.pk), LOG)

            def test_results_view_delete(self):
                response = self.client.delete(reverse("polls:results", args=(self.question.id,)))
                self.assertEqual(response.status_code, 302)
                self.assertFalse(Question.objects.exists())
    """,
}


def django_traffic(base: str) -> list[tuple[str, str, int]]:
    """A visitor: the list, a poll, a vote, its results, the admin's login page, a missing page."""
    visitor = Browser(base)
    visitor.request("/polls/")
    visitor.request("/polls/1/")
    visitor.request("/polls/1/results/")
    visitor.request("/admin/login/")
    visitor.request("/polls/999/")
    return visitor.log


def test_django_app_under_gunicorn(collector: Collector, tmp_path: Path) -> None:
    app = tmp_path / "mysite-app"
    for relpath, text in DJANGO_FILES.items():
        path = app / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    with (app / "polls" / "views.py").open("a") as handle:
        handle.write(DEAD_FUNCTION)  # so that something is safe to remove
    env = collector.env | {"DJANGO_SETTINGS_MODULE": "mysite.settings"}
    manage = [BIN / "python", "manage.py"]
    run(*manage, "makemigrations", "polls", "-v", "0", cwd=app, env=env, check=True)
    assert collector.coldmod("init", cwd=app).returncode == 0  # finds polls/migrations/ and leaves it out
    (app / ".gitignore").write_text("db.sqlite3\n.coldmod-cache/\n")
    git_commit(app, "the polls site")
    run(*manage, "migrate", "-v", "0", cwd=app, env=env, check=True)  # untraced setup
    run(*manage, "seedpolls", cwd=app, env=env, check=True)

    server, base = gunicorn("mysite.wsgi", app, env, traced=True)
    try:
        wait_for_app(collector, app)
        served = django_traffic(base)
    finally:
        assert server.stop() == 0, "".join(server.lines)
    assert [status for *_, status in served] == [200, 200, 200, 200, 404]
    functions = wait_for_calls(collector, app, "polls.views.index")
    assert not any(key.startswith("polls.tests.") for key in functions)  # tests.py is never traced
    cold = cold_keys(collector, app)
    expected_cold = {
        "polls.views.ResultsView.delete",
        "polls.views.vote",
        "polls.management.commands.closepolls.Command.handle",
        "polls.signals.choice_deleted",
        "polls.admin.QuestionAdmin.votes",
    }
    assert expected_cold <= cold

    removed = remove_cold(collector, app)
    assert "safe    polls.views.legacy_b64_checksum" in removed.stdout, removed.stdout
    assert "legacy_b64_checksum" not in (app / "polls" / "views.py").read_text()

    # Each is reached without a call during tracing: by URL name, by name dispatch, by a signal, by admin.
    remaining = collector.coldmod("srcs", cwd=app).stdout
    for kept in expected_cold | {"polls.templatetags.poll_extras.vote_label", "polls.models.Question.total_votes"}:
        assert kept in remaining, removed.stdout + removed.stderr
    tests = run(*manage, "test", "polls", "-v", "2", cwd=app, env=env)
    assert tests.returncode == 0, tests.stderr + removed.stdout
    assert "Ran 5 tests" in tests.stderr
    closed = run(*manage, "closepolls", cwd=app, env=env)
    assert closed.returncode == 0, closed.stderr
    os.remove(app / "db.sqlite3")
    run(*manage, "migrate", "-v", "0", cwd=app, env=env, check=True)
    run(*manage, "seedpolls", cwd=app, env=env, check=True)
    plain, base = gunicorn("mysite.wsgi", app, env, traced=False)
    try:
        assert django_traffic(base) == served
    finally:
        plain.stop()


# ------------------------------------------------------------------ a real library


def _findings(*argv: str | Path, cwd: Path, env: dict[str, str]) -> list[str]:
    """What a checker reports, without line numbers (a removal above a finding moves it), sorted."""
    done = run(*argv, cwd=cwd, env=env)
    found = [line for line in done.stdout.splitlines() if ": error:" in line or re.search(r":\d+: F\d+", line)]
    return sorted(re.sub(r":\d+(:\d+)?:", ":", line, count=1) for line in found)


def test_itsdangerous_traced_by_its_own_tests(collector: Collector, downloads: Path, tmp_path: Path) -> None:
    root = tmp_path / "itsdangerous"
    shutil.copytree(sdist("itsdangerous", "2.2.0", downloads), root)
    env = collector.env | {"PYTHONPATH": str(root / "src")}
    # Its test suite covers nearly everything, and every function it leaves cold is referenced: one function
    # nothing refers to makes sure that a removal does happen (and that it leaves no unused import behind).
    with (root / "src" / "itsdangerous" / "encoding.py").open("a") as handle:
        handle.write(DEAD_FUNCTION)
    assert collector.coldmod("init", cwd=root).returncode == 0
    git_commit(root, "itsdangerous as released, plus one dead function")
    pytest_argv = [BIN / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
    ruff = [BIN / "ruff", "check", "--isolated", "--no-cache", "--output-format", "concise", "--select", "F821,F401"]
    mypy = [BIN / "mypy", "--no-incremental", "--cache-dir", os.devnull, "src"]
    ruff_before = _findings(*ruff, "src", "tests", cwd=root, env=env)
    mypy_before = _findings(*mypy, cwd=root, env=env)

    traced = run(BIN / "coldmod-trace", "run", "--", *pytest_argv, cwd=root, env=env | TRACE_ENV)
    assert traced.returncode == 0, traced.stdout + traced.stderr
    wait_for_calls(collector, root, "src.itsdangerous.signer.Signer.sign")
    assert cold_keys(collector, root), "the test suite leaves some functions cold"

    removed = remove_cold(collector, root)
    assert "safe    src.itsdangerous.encoding.legacy_b64_checksum" in removed.stdout, removed.stdout
    assert "legacy_b64_checksum" not in (root / "src" / "itsdangerous" / "encoding.py").read_text()

    tests = run(*pytest_argv, cwd=root, env=env)
    assert tests.returncode == 0, tests.stdout + removed.stdout
    # Nothing new (what the removed code itself had may go).
    assert set(_findings(*ruff, "src", "tests", cwd=root, env=env)) <= set(ruff_before), removed.stdout
    assert set(_findings(*mypy, cwd=root, env=env)) <= set(mypy_before), removed.stdout
