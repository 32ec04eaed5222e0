"""Sphinx configuration for the django_realtime documentation."""

import os
import sys
from pathlib import Path

import django

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
