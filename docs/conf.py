"""Sphinx configuration for the django_realtime documentation."""

import os
import re
import sys
from pathlib import Path
from typing import Any

import django
from sphinx.util import logging

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
django.setup()

import django_realtime  # noqa: E402

project = "django_realtime"
author = "django_realtime contributors"
copyright = "django_realtime contributors"
release = django_realtime.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build"]
templates_path: list[str] = []

html_theme = "furo"
html_title = f"django_realtime {release}"

# Google-style docstrings: Args, Returns, Raises, Attributes.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes become fields of the class, not separate entries, so a property
# that is also listed under "Attributes:" is not described twice.
napoleon_use_ivar = True

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True


def _check_ids_documented(app: Any) -> None:
    """Warn when a system check id in checks.py is missing from the topic."""
    from django_realtime import checks

    topic = Path(app.srcdir, "topics", "checks.rst").read_text(encoding="utf-8")
    pattern = r"django_realtime\.[EW]\d{3}"
    missing = sorted(
        set(re.findall(pattern, checks.__doc__ or "")) - set(re.findall(pattern, topic))
    )
    if missing:
        logging.getLogger(__name__).warning(
            "topics/checks.rst does not describe %s, listed in "
            "django_realtime/checks.py.",
            ", ".join(missing),
        )


def setup(app: Any) -> dict[str, Any]:
    """Hook the documentation's own consistency checks into the build."""
    app.connect("builder-inited", _check_ids_documented)
    return {"parallel_read_safe": True}
