"""What an AppTest page shows, as text: read by the page tests (a module of its own, so that importing it never
depends on which conftest was loaded last)."""
from __future__ import annotations


def shown_text(at) -> list[str]:
    """Every value shown as verbatim text: st.text, st.code and dataframe cells."""
    out = [t.value for t in at.text] + [c.value for c in at.code]
    for df in at.dataframe:
        out += [str(v) for v in df.value.astype(str).to_numpy().ravel()]
    return out


def markdown_text(at) -> list[str]:
    """Everything rendered as Markdown (titles, captions, markdown, info/success/warning/error boxes)."""
    out = [m.value for m in at.markdown] + [c.value for c in at.caption]
    for kind in ("info", "success", "warning", "error", "title", "subheader", "header"):
        out += [str(e.value) for e in getattr(at, kind)]
    return out
