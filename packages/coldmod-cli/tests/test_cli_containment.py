"""rm --cold end to end: a cold ``get`` of a class whose instances never escape goes, though live code calls
``.get`` on objects nobody can type; once an instance escapes, it stays."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import git, traced
from test_cli_rm import HOT

pytestmark = pytest.mark.timeout(120)

SPOOL = '''\
"""Receipts: a spool whose label is printed."""


class Spool:
    def label(self):
        return "spool"

    def get(self, key):
        return (key, self.label())


def lookup(params, key):
    return params.get(key)


LABEL = Spool().label()
'''

LIVE = {**HOT, "shop.spool.Spool.label": 1, "shop.spool.lookup": 3}


def _add(shop, text: str) -> None:
    (shop / "shop" / "spool.py").write_text(text)
    git(shop, "add", "-A")
    git(shop, "commit", "-q", "-m", "spool")


def test_rm_cold_removes_the_cold_get_of_a_contained_class(cli, shop, insecure_env):
    _add(shop, SPOOL)
    traced(insecure_env.address, shop, LIVE)

    result = cli("rm", "--cold", "--min-tracked", "0s")

    assert result.code == 0, result.err
    text = (shop / "shop" / "spool.py").read_text()
    assert "def get" not in text, result.out + result.err
    assert "def lookup" in text
    done = subprocess.run([sys.executable, "-c", "import shop.spool as s; print(s.LABEL, s.lookup({1: 2}, 1))"],
                          cwd=shop, capture_output=True, text=True)
    assert done.stdout == "spool 2\n", done.stderr


def test_rm_cold_keeps_it_once_an_instance_escapes(cli, shop, insecure_env):
    _add(shop, SPOOL + "\n\nprint(Spool())\n")
    traced(insecure_env.address, shop, LIVE)

    result = cli("rm", "--cold", "--dry-run", "--min-tracked", "0s")

    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert "unsafe  shop.spool.Spool.get" in lines
    reasons = lines[lines.index("unsafe  shop.spool.Spool.get") + 1]
    assert "shop/spool.py:13 attribute in shop.spool.lookup (3 calls)" in reasons
