"""The form a user submits a job with."""

from __future__ import annotations

from typing import Any

from django import forms

from example_project.jobs import work

__all__ = ["JobForm"]


class JobForm(forms.Form):
    """Ask for a kind of job, its number, and whether it should fail."""

    kind = forms.ChoiceField(choices=list(work.KINDS.items()), initial="wait")
    number = forms.IntegerField(label="N", min_value=1, initial=5)
    fail_halfway = forms.BooleanField(
        required=False, help_text="To see what a failed job looks like."
    )

    def clean(self) -> dict[str, Any]:
        """Check ``number`` against the limit of the chosen kind."""
        cleaned = super().clean() or {}
        kind, number = cleaned.get("kind"), cleaned.get("number")
        if kind in work.LIMITS and number is not None and number > work.LIMITS[kind]:
            self.add_error(
                "number",
                f"Expected at most {work.LIMITS[kind]:,} for this kind of job, "
                f"got {number:,}.",
            )
        return cleaned

    def parameters(self) -> dict[str, Any]:
        """Return the job's parameters, from a valid form."""
        return {
            "number": self.cleaned_data["number"],
            "fail_halfway": self.cleaned_data["fail_halfway"],
        }
