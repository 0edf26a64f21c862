"""The slider names of an ipywidgets explorer."""

from __future__ import annotations


def widget_names(widget) -> set[str]:
    """The descriptions of the explorer's controls."""
    return {getattr(c, "description", "") for c in widget.children} - {""}
