"""Uses a framework makes of code that never names it in Python, which a reader can still see: each must keep
the function out of ``--include review`` (the ``registered``, ``field-hook`` and ``template`` rules), and the
imports a string names must stay when their last user goes.

django-debug-toolbar's own tests failed after ``--include review`` for each of these (issue 18's removal
benchmark): its system checks (``@register``), its ``setting_changed`` receivers, its forms' ``clean_<field>``,
the profiling panel's methods its template shows, and ``mock.patch("debug_toolbar.apps.mimetypes...")``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_verdicts import tree

from coldmod_codemod import apply, plan_removal
from coldmod_codemod._rules import REVIEW, SAFE, TEST_ONLY, UNSAFE

pytestmark = pytest.mark.timeout(120)
EVERY_LEVEL = (SAFE, TEST_ONLY, REVIEW)


def verdicts(root: Path, keys: list[str]) -> dict[str, tuple[str, list[str]]]:
    """Each key's verdict and the ``path:line kind`` of its reasons."""
    plan = plan_removal(root, keys, include=EVERY_LEVEL)
    return {k: (v.verdict, [f"{r.path}:{r.line} {r.kind}" for r in v.references]) for k, v in plan.verdicts.items()}


# -- registered: a framework decorator keeps the function and calls it ----------------------------------------

REGISTRATIONS = {
    "site/__init__.py": "",
    "site/checks.py": """
        import atexit
        from django.core.checks import Warning, register
        from django.core import checks
        from django.dispatch import receiver
        from django.test.signals import setting_changed


        @register
        def check_settings(app_configs, **kwargs):
            return [Warning("x")]


        @checks.register(checks.Tags.security)
        def check_security(app_configs, **kwargs):
            return []


        @receiver(setting_changed)
        def reset_cache(**kwargs):
            pass


        @atexit.register  # runs in the traced process: the tracer sees it
        def goodbye():
            pass


        def logged(func):
            return func


        @logged
        def wrapped():
            pass
    """,
    "site/templatetags/__init__.py": "",
    "site/templatetags/extras.py": """
        from django import template

        register = template.Library()


        @register.filter
        def shout(value):
            return value.upper()


        @register.simple_tag(takes_context=True)
        def greeting(context):
            return "hello"
    """,
    "site/hookspecs.py": """
        from pluggy import HookimplMarker

        hookimpl = HookimplMarker("site")
    """,
    "site/plugins/__init__.py": "from site.hookspecs import hookimpl\n",
    "site/plugins/menu.py": """
        from site.plugins import hookimpl


        @hookimpl
        def menu_links(request):
            return []


        @hookimpl(tryfirst=True)
        def startup(app):
            pass
    """,
}


@pytest.mark.parametrize(("key", "line"), [
    ("site.checks.check_settings", "site/checks.py:8"),
    ("site.checks.check_security", "site/checks.py:13"),
    ("site.checks.reset_cache", "site/checks.py:18"),
    ("site.templatetags.extras.shout", "site/templatetags/extras.py:6"),
    ("site.templatetags.extras.greeting", "site/templatetags/extras.py:11"),
    ("site.plugins.menu.menu_links", "site/plugins/menu.py:4"),
    ("site.plugins.menu.startup", "site/plugins/menu.py:9"),
])
def test_a_function_a_framework_decorator_registers_is_unsafe(tmp_path: Path, key: str, line: str) -> None:
    root = tree(tmp_path, REGISTRATIONS)
    assert verdicts(root, [key])[key] == (UNSAFE, [f"{line} registered"])


@pytest.mark.parametrize(("key", "line"), [("site.checks.wrapped", "site/checks.py:32"),
                                           ("site.checks.goodbye", "site/checks.py:23")])
def test_a_decorator_the_reader_does_not_know_stays_review(tmp_path: Path, key: str, line: str) -> None:
    assert verdicts(tree(tmp_path, REGISTRATIONS), [key])[key] == (REVIEW, [f"{line} decorator"])


# -- field-hook: clean_<field> of a form that declares the field ----------------------------------------------

FORMS = {
    "shop/__init__.py": "",
    "shop/forms.py": """
        from django import forms


        class SignedForm(forms.Form):
            signed = forms.CharField()

            def clean_signed(self):
                return self.cleaned_data["signed"]

            def clean_other(self):
                return None


        class Child(SignedForm):
            extra = forms.CharField()

            def clean_extra(self):
                return None


        class Base(forms.Form):
            def clean_code(self):
                return None


        class Coded(Base):
            code = forms.CharField()
    """,
}


@pytest.mark.parametrize(("key", "hook"), [
    ("shop.forms.SignedForm.clean_signed", "shop/forms.py:7 field-hook"),
    ("shop.forms.Child.clean_extra", "shop/forms.py:17 field-hook"),
    # A base's hook for a field a subclass declares: validating the subclass's form calls it.
    ("shop.forms.Base.clean_code", "shop/forms.py:22 field-hook"),
])
def test_a_hook_for_a_declared_field_is_unsafe(tmp_path: Path, key: str, hook: str) -> None:
    found, reasons = verdicts(tree(tmp_path, FORMS), [key])[key]
    assert found == UNSAFE
    assert hook in reasons


def test_a_hook_for_no_declared_field_is_only_the_naming_convention(tmp_path: Path) -> None:
    found, reasons = verdicts(tree(tmp_path, FORMS), ["shop.forms.SignedForm.clean_other"])[
        "shop.forms.SignedForm.clean_other"]
    assert found == REVIEW
    assert not [r for r in reasons if r.endswith("field-hook")]


# -- template: a method a template looks up ------------------------------------------------------------------

TEMPLATES = {
    "prof/__init__.py": "",
    "prof/panel.py": """
        class Call:
            def tottime(self):
                return 1

            def indent(self):
                return 2

            def caption(self):
                return "x"

            def unused(self):
                return 3


        def rows():
            return [Call()]
    """,
    "prof/templates/prof/panel.html": """
        {% for call in rows %}
          <div style="padding-left: {{ call.indent }}px">{{ call.tottime|floatformat:3 }}</div>
          {% if call.parent.caption %}{% static 'prof/unused.js' %}{% endif %}
          <p>tottime, unused: prose outside a tag</p>
        {% endfor %}
    """,
}


@pytest.mark.parametrize(("key", "expected"), [
    ("prof.panel.Call.tottime", (UNSAFE, ["prof/templates/prof/panel.html:2 template"])),
    ("prof.panel.Call.indent", (UNSAFE, ["prof/templates/prof/panel.html:2 template"])),
    ("prof.panel.Call.caption", (UNSAFE, ["prof/templates/prof/panel.html:3 template"])),
    # Only in a quoted string or in prose: a word, as before.
    ("prof.panel.Call.unused", (REVIEW, ["prof/templates/prof/panel.html:3 text"])),
])
def test_a_method_a_template_looks_up_is_unsafe(tmp_path: Path, key: str, expected: tuple[str, list[str]]) -> None:
    assert verdicts(tree(tmp_path, TEMPLATES), [key])[key] == expected


def test_a_contained_class_is_out_of_a_templates_reach(tmp_path: Path) -> None:
    """An instance nobody hands on (only made and read from) cannot be in a template's context."""
    files = TEMPLATES | {"prof/panel.py": """
        class Call:
            def tottime(self):
                return 1


        def total():
            return Call().tottime()
    """}
    assert verdicts(tree(tmp_path, files), ["prof.panel.Call.tottime"])["prof.panel.Call.tottime"][0] == UNSAFE
    files["prof/panel.py"] = files["prof/panel.py"].replace("return Call().tottime()", "return 0")
    assert verdicts(tree(tmp_path, files), ["prof.panel.Call.tottime"])["prof.panel.Call.tottime"] == (SAFE, [])


# -- an import that a dotted path in a string still names stays ----------------------------------------------

PATCHED = {
    "app/__init__.py": "",
    "app/checks.py": """
        import mimetypes
        import json


        def js_mimetype():
            return mimetypes.guess_type("x.js") + json.dumps(1)


        def live():
            return 1
    """,
    "tests/test_checks.py": """
        from unittest.mock import patch

        from app.checks import live


        @patch("app.checks.mimetypes.guess_type", return_value=("text/plain", None))
        def test_live(guess):
            assert live() == 1
    """,
}


def test_an_import_a_string_names_stays_when_its_last_user_goes(tmp_path: Path) -> None:
    plan = plan_removal(tree(tmp_path, PATCHED), ["app.checks.js_mimetype"])
    assert plan.verdicts["app.checks.js_mimetype"].removed
    (edit,) = plan.edits
    # `json` goes with its only user; `mimetypes` stays: the test patches app.checks.mimetypes by its path.
    assert edit.new.decode() == "import mimetypes\n\n\ndef live():\n    return 1\n"


def test_an_import_a_config_file_names_stays_too(tmp_path: Path) -> None:
    files = PATCHED | {"tests/test_checks.py": "", "setup.cfg": "[tool]\nhook = app.checks:json\n"}
    (edit,) = plan_removal(tree(tmp_path, files), ["app.checks.js_mimetype"]).edits
    assert edit.new.decode() == "import json\n\n\ndef live():\n    return 1\n"


# -- on real Django: after --include review, the project's own checks, forms, tags and templates still work --

DJANGO_PROJECT = {
    "proj/__init__.py": "",
    "proj/settings.py": """
        SECRET_KEY = "x"
        INSTALLED_APPS = ["proj.app"]
        DATABASES = {}
        USE_TZ = True
        TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
        FLAG = False
    """,
    "proj/app/__init__.py": "",
    "proj/app/apps.py": """
        import mimetypes

        from django.apps import AppConfig
        from django.conf import settings
        from django.core.checks import Warning, register
        from django.dispatch import receiver
        from django.test.signals import setting_changed

        SEEN = []


        class AppConfig(AppConfig):
            name = "proj.app"


        @register
        def check_flag(app_configs, **kwargs):
            kind, _ = mimetypes.guess_type("x.js")
            return [Warning(f"flag is on ({kind})", id="app.W001")] if settings.FLAG else []


        @receiver(setting_changed)
        def remember(setting, **kwargs):
            SEEN.append(setting)


        def retired_helper():
            return "nobody calls this"
    """,
    "proj/app/forms.py": """
        from django import forms


        class CodeForm(forms.Form):
            code = forms.CharField()

            def clean_code(self):
                return self.cleaned_data["code"].upper()
    """,
    "proj/app/rows.py": """
        class Row:
            def __init__(self, n):
                self.n = n

            def doubled(self):
                return self.n * 2


        def rows():
            return [Row(1), Row(2)]
    """,
    "proj/app/templatetags/__init__.py": "",
    "proj/app/templatetags/shout.py": """
        from django import template

        register = template.Library()


        @register.filter
        def shout(value):
            return str(value).upper() + "!"
    """,
    "proj/app/templates/rows.html": "{% load shout %}{% for r in rows %}{{ r.doubled }}{% endfor %}{{ 'a'|shout }}",
    "tests/__init__.py": "",
    "tests/test_app.py": """
        from django.core.checks import run_checks
        from django.template.loader import render_to_string
        from django.test import SimpleTestCase, override_settings

        from proj.app import apps
        from proj.app.forms import CodeForm
        from proj.app.rows import rows


        class AppTests(SimpleTestCase):
            @override_settings(FLAG=True)
            def test_check(self):
                self.assertEqual([w.id for w in run_checks()], ["app.W001"])
                self.assertIn("FLAG", apps.SEEN)

            def test_mimetype_patched(self):
                from unittest.mock import patch
                with patch("proj.app.apps.mimetypes.guess_type", return_value=("x", None)):
                    self.assertEqual(apps.mimetypes.guess_type("y"), ("x", None))

            def test_form(self):
                form = CodeForm({"code": "ab"})
                self.assertTrue(form.is_valid())
                self.assertEqual(form.cleaned_data["code"], "AB")

            def test_template(self):
                self.assertEqual(render_to_string("rows.html", {"rows": rows()}), "24A!")
    """,
}
#: What the traced server never ran: everything the project's tests reach only through Django, and one helper.
DJANGO_COLD = [
    "proj.app.apps.check_flag", "proj.app.apps.remember", "proj.app.apps.retired_helper",
    "proj.app.forms.CodeForm.clean_code", "proj.app.rows.Row.doubled", "proj.app.templatetags.shout.shout",
]


def _django_tests(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "proj.settings", "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-m", "django", "test", "-v", "1", "tests"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)


def test_review_removal_keeps_a_real_django_projects_tests_passing(tmp_path: Path) -> None:
    pytest.importorskip("django")
    root = tree(tmp_path, DJANGO_PROJECT)
    before = _django_tests(root)
    assert before.returncode == 0, before.stderr[-2000:]
    plan = plan_removal(root, DJANGO_COLD, include=EVERY_LEVEL)
    removed = {k for k, v in plan.verdicts.items() if v.removed}
    assert removed == {"proj.app.apps.retired_helper"}
    assert {plan.verdicts[k].verdict for k in DJANGO_COLD if k not in removed} == {UNSAFE}
    assert apply(plan).ok
    assert "import mimetypes" in (root / "proj/app/apps.py").read_text()
    done = _django_tests(root)
    assert done.returncode == 0, done.stderr[-2000:]
