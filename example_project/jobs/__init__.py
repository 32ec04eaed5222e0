"""Jobs: slow work on a background worker, progress pushed to the page."""
