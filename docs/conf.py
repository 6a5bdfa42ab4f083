"""Sphinx configuration of raygrid's user guide (docs/guide/) and API reference (numpydoc).

Build: ``sphinx-build -W -b html docs/ docs/_build`` (tests/project/test_docs.py runs it).
"""

from raygrid import __version__

project = "raygrid"
author = "raygrid contributors"
release = __version__
version = __version__

extensions = ["sphinx.ext.autodoc", "numpydoc"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# numpydoc's checks (https://numpydoc.readthedocs.io/en/latest/validation.html), all
# of them except:
#   ES01  extended summary: a one-line summary is enough when it says it all;
#   SA01  "See Also" section: kept where a neighbour exists, not required everywhere.
NUMPYDOC_IGNORED_CHECKS = {"ES01", "SA01"}
# Per object, with the reason:
#   RaySearchMixin  PR01/PR02: a mixin; its documented parameters are the options a
#                   subclass's __init__ declares, not the scikit-learn parameters of
#                   the BaseSearchCV signature it inherits.
NUMPYDOC_IGNORED_PER_OBJECT = {"raygrid.RaySearchMixin": {"PR01", "PR02"}}
# For the public methods and properties of the public classes (tests/project/test_docs.py):
#   EX01  Examples: the class's own Examples show its methods in use.
NUMPYDOC_IGNORED_FOR_METHODS = {"EX01"}
# and for those inherited from scikit-learn (score, get_params, ...), whose docstrings
# are scikit-learn's:
#   RT02  scikit-learn names the returned value (``self : object``).
NUMPYDOC_IGNORED_FOR_INHERITED = {"RT02"}
numpydoc_validation_checks = {"all", *NUMPYDOC_IGNORED_CHECKS}
# RaySearchMixin is validated by tests/project/test_docs.py with the exemption above.
numpydoc_validation_exclude = {r"\.__init__$", r"^raygrid\.RaySearchMixin$"}
numpydoc_validation_overrides = {}
