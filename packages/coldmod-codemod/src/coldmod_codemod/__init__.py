"""coldmod-codemod: find Python functions and remove them safely with LibCST.

Importable by any tool; per-file problems come back as results, not exceptions.
The LibCST codemod command lives in :mod:`coldmod_codemod.commands`.
"""

from coldmod_codemod._apply import ApplyResult, apply
from coldmod_codemod._discovery import (
    DiscoveryFailure,
    FunctionDef,
    find_functions,
    iter_python_files,
    module_for,
)
from coldmod_codemod._plan import FileEdit, Progress, RemovalPlan, Verdict, plan_removal
from coldmod_codemod._references import (
    ALL,
    ATTRIBUTE,
    CALL,
    IMPLICIT,
    IMPORT,
    METHOD,
    NAME,
    REMOVABLE_KINDS,
    STRING,
    UNPARSED,
    FileFailure,
    Reference,
    find_references,
)
from coldmod_codemod._rules import REVIEW, RULES, SAFE, UNSAFE, VERDICTS, Rule
from coldmod_codemod._version import __version__

__all__ = [
    "ALL",
    "ATTRIBUTE",
    "CALL",
    "IMPLICIT",
    "IMPORT",
    "METHOD",
    "NAME",
    "REMOVABLE_KINDS",
    "REVIEW",
    "RULES",
    "SAFE",
    "STRING",
    "UNPARSED",
    "UNSAFE",
    "VERDICTS",
    "ApplyResult",
    "DiscoveryFailure",
    "FileEdit",
    "FileFailure",
    "FunctionDef",
    "Progress",
    "Reference",
    "RemovalPlan",
    "Rule",
    "Verdict",
    "__version__",
    "apply",
    "find_functions",
    "find_references",
    "iter_python_files",
    "module_for",
    "plan_removal",
]
