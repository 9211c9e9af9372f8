"""coldmod-codemod: find Python functions and remove them safely with LibCST.

Importable by any tool; results rather than exceptions for per-file problems.
"""

from coldmod_codemod._discovery import (
    DiscoveryFailure,
    FunctionDef,
    find_functions,
    iter_python_files,
    module_for,
)
from coldmod_codemod._version import __version__

__all__ = [
    "DiscoveryFailure",
    "FunctionDef",
    "__version__",
    "find_functions",
    "iter_python_files",
    "module_for",
]
