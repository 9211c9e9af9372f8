"""`rm --cold --branch-per-owner` with real git, a real CODEOWNERS file and a real collector."""

from __future__ import annotations

import pytest
from conftest import HOT, git, traced

from coldmod_cli.codeowners import parse

pytestmark = pytest.mark.timeout(180)

CODEOWNERS = """\
# The last matching line wins.
*                   @acme/core
shop/cart.py        @acme/checkout
/shop/catalog.py    @acme/catalog @alice   # two owners, one group
"""


def branches(root) -> list[str]:
    return sorted(git(root, "branch", "--format=%(refname:short)").split())


@pytest.fixture
def owned(shop, insecure_env):
    (shop / ".github").mkdir()
    (shop / ".github" / "CODEOWNERS").write_text(CODEOWNERS)
    git(shop, "add", "-A")
    git(shop, "commit", "-qm", "owners")
    traced(insecure_env.address, shop, HOT)
    return shop


def test_one_branch_and_commit_per_owner_and_the_work_tree_untouched(cli, owned):
    shop = owned
    bare = shop.parent / "remote.git"
    git(shop.parent, "init", "-q", "--bare", str(bare))
    git(shop, "remote", "add", "origin", str(bare))
    head, current = git(shop, "rev-parse", "HEAD").strip(), git(shop, "branch", "--show-current").strip()
    before = {p: p.read_bytes() for p in (shop / "shop").glob("*.py")}

    result = cli("rm", "--cold", "--branch-per-owner", "--min-tracked", "0s")

    assert result.code == 0, result.err
    made = [b for b in branches(shop) if b.startswith("coldmod/")]
    assert made == ["coldmod/cold-acme-catalog+alice", "coldmod/cold-acme-checkout"]
    # views.coupon is still referenced (by the routes table): its owner gets no branch, and is told why.
    assert "coldmod/cold-acme-core: nothing to remove (1 cold function kept; reasons above)" in result.err
    # The developer stays where they were: same branch, same commit, same files, nothing staged.
    assert git(shop, "rev-parse", "HEAD").strip() == head
    assert git(shop, "branch", "--show-current").strip() == current
    assert git(shop, "status", "--porcelain") == ""
    assert {p: p.read_bytes() for p in (shop / "shop").glob("*.py")} == before
    for branch, files in {
        "coldmod/cold-acme-checkout": ["shop/cart.py"],
        "coldmod/cold-acme-catalog+alice": ["shop/catalog.py"],
    }.items():
        assert git(shop, "rev-list", "--count", f"{head}..{branch}").strip() == "1"  # one commit, on HEAD
        assert git(shop, "rev-parse", f"{branch}~1").strip() == head
        assert git(shop, "diff", "--name-only", head, branch).split() == files
    message = git(shop, "log", "-1", "--format=%B", "coldmod/cold-acme-checkout")
    assert message.startswith("Remove ")
    assert "owned by @acme/checkout" in message.splitlines()[0]
    assert "| Function | Location | Evidence | Verdict |" in message
    assert "| `shop.cart.Cart.merge` | `shop/cart.py:" in message
    assert "0 calls, never called, tracked since" in message
    assert "| safe" in message
    removed = git(shop, "show", "coldmod/cold-acme-checkout:shop/cart.py")
    assert "def merge(" not in removed
    assert "def add(" in removed
    note = shop / ".git" / "coldmod" / "pr-acme-checkout.md"
    assert note.read_text() in message
    assert "description in" in result.err
    # Never pushed.
    assert git(bare, "for-each-ref") == ""

    again = cli("rm", "--cold", "--branch-per-owner", "--min-tracked", "0s")
    assert again.code == 1
    assert "the branch coldmod/cold-acme-catalog+alice already exists" in again.err


def test_without_codeowners_one_branch(cli, shop, insecure_env):
    traced(insecure_env.address, shop, HOT)
    result = cli("rm", "--cold", "--branch-per-owner", "--min-tracked", "0s")
    assert result.code == 0, result.err
    assert [b for b in branches(shop) if b.startswith("coldmod/")] == ["coldmod/cold-all"]
    assert "no CODEOWNERS (one group)" in result.err
    changed = git(shop, "diff", "--name-only", "HEAD", "coldmod/cold-all").split()
    assert len(changed) >= 2


def test_dry_run_makes_no_branch_and_prints_each_description(cli, owned):
    result = cli("rm", "--cold", "--branch-per-owner", "--dry-run", "--min-tracked", "0s")
    assert result.code == 0, result.err
    assert [b for b in branches(owned) if b.startswith("coldmod/")] == []
    assert "## coldmod/cold-acme-checkout: Remove" in result.out
    assert "would commit" in result.err


def test_refused_on_a_dirty_tree_and_without_cold(cli, owned):
    views = owned / "shop" / "views.py"
    views.write_text(views.read_text() + "\n# edited\n")
    dirty = cli("rm", "--cold", "--branch-per-owner", "--min-tracked", "0s")
    assert dirty.code == 1
    assert "uncommitted changes" in dirty.err
    assert [b for b in branches(owned) if b.startswith("coldmod/")] == []
    assert cli("rm", "shop.views.coupon", "--branch-per-owner").code == 2
    assert cli("rm", "--cold", "--branch-per-owner", "--allow-dirty").code == 2


@pytest.mark.parametrize(
    ("path", "owners"),
    [
        ("README.md", ("@all",)),
        ("web/app.js", ("@js",)),
        ("build/out/x.py", ("@build",)),
        ("src/build/x.py", ("@all",)),  # /build/ is anchored at the top
        ("docs/a.md", ("@docs",)),
        ("docs/deep/a.md", ("@all",)),  # docs/* is the files directly in docs/
        ("services/apps/x.py", ("@apps",)),  # apps/ matches a directory anywhere
        ("a/b/tests/t.py", ("@qa",)),
        ("src/payments/api.py", ("@pay", "@ops")),
        ("src/paymentsx.py", ("@all",)),
        ("vendor/lib/a.py", ()),  # a pattern without owners: unowned
        ("x.neg", ("@all",)),  # `!` lines are not GitHub syntax: skipped
    ],
)
def test_codeowners_rules_as_github_reads_them(path, owners):
    rules = parse(
        "* @all\n*.js @js\n/build/ @build\ndocs/* @docs\napps/ @apps\n**/tests @qa\n"
        "/src/payments @pay @ops  # inline comment\nvendor/lib\n!*.neg @neg\n"
    )
    assert rules.owners(path) == owners


def test_github_uses_the_first_codeowners_of_its_three_places(tmp_path):
    from coldmod_cli.codeowners import find

    assert find(tmp_path).path is None
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "CODEOWNERS").write_text("* @docs-file\n")
    assert find(tmp_path).owners("a.py") == ("@docs-file",)
    (tmp_path / "CODEOWNERS").write_text("* @root-file\n")
    assert find(tmp_path).owners("a.py") == ("@root-file",)
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "CODEOWNERS").write_text("* @github-file\n")
    assert find(tmp_path).owners("a.py") == ("@github-file",)
