"""The package list, derived from the tree (metadata and everything else live in pyproject.toml).

`cli/` sits at the top of the repo but installs as `refusalscope.cli`; pyproject's
`packages.find` cannot search under a remapped folder, so the search is done here. Folders
without `__init__.py` (`resources/`, `static/`) are found as namespace packages so their data
files ship too. `tests/test_packaging.py` builds a wheel and checks every tracked file is in it.
"""

from setuptools import find_namespace_packages, setup

_SKIP = ["*__pycache__*"]
setup(packages=find_namespace_packages(include=["refusalscope", "refusalscope.*"], exclude=_SKIP)
      + ["refusalscope.cli"]
      + [f"refusalscope.cli.{p}" for p in find_namespace_packages("cli", exclude=_SKIP)])
