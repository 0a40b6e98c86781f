"""The notebook explorer: the shared Bokeh views inside ipywidgets, fed from Python.

`build_explorer(data)` returns an `Explorer`, an `ipywidgets.VBox` holding the controls (layer and
head pickers, an anchor list, a tag filter, a tag editor, the token view's head picker) above the Bokeh
views of `figures.build_views`, embedded through `jupyter_bokeh.BokehModel`. Python only feeds data:
every change goes through `Explorer.select`, `set_layer_head`, `set_tag_filter`, `correct_tag` or
`set_token_head`, which write the shared `ColumnDataSource`s; the views' own browser-side callbacks (the
same as the report's) render the text, the info panel, the summary and the notes from them. A tap in the
browser (a bar, a heatmap cell, a scatter point, a route edge, a clicked sentence) changes the shared
selection there, `jupyter_bokeh` syncs it back, and `select` follows.

Only the current pooled `[n, n]` matrix and the selected sentence's token rows are ever in the Bokeh
document; changing layer, head or selection swaps them from Python.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from jupyter_bokeh import BokehModel

from stream_widgets.views import corrections as corrections_io
from stream_widgets.views.data import ExploreData
from stream_widgets.views.figures import attach, build_views
from stream_widgets.views.matrices import select_matrix, select_scores
from stream_widgets.views.sources import (
    MAX_HEATMAP_SIZE,
    heat_data,
    links_data,
    sentence_columns,
    state_data,
    tag_heat_data,
    token_data,
)

__all__ = ["Explorer", "build_explorer", "load_bokehjs"]

_AVERAGE = -1  # picker value for "receiver-head average" (layer) and "mean of heads" (head)


class Explorer(widgets.VBox):
    """Linked views of one trace; an ipywidget, so a notebook cell that returns it shows it.

    Attributes:
        data: The `ExploreData` shown (its `tags` follow the corrections made here).
        views: The Bokeh models (`figures.Views`).
        bokeh_widget: The `jupyter_bokeh.BokehModel` wrapping `views.layout`.
        layer_picker, head_picker: `ipywidgets.Dropdown`s; -1 means the receiver-head average / the
            mean over heads.
        tag_filter: `ipywidgets.SelectMultiple` of the tags shown at full opacity.
        anchor_list: `ipywidgets.Dropdown` of all sentences, best anchor first; picking one selects it.
        tag_editor: `ipywidgets.Dropdown` of the tag vocabulary: picking a tag corrects the selected
            sentence's tag.
        token_head_picker: `ipywidgets.Dropdown` of the token view's recorded heads, or None.
    """

    def __init__(
        self, data: ExploreData, max_size: int = MAX_HEATMAP_SIZE, output_backend: str = "canvas"
    ) -> None:
        if not isinstance(data, ExploreData):
            raise TypeError(f"build_explorer needs an ExploreData, got {type(data).__name__}")
        self.data = data
        self.max_size = int(max_size)
        self._layer: int | None = None
        self._head: int | None = None
        self._matrix = select_matrix(data, None, None)
        self._selected: int | None = None
        self._hidden: set[str] = set()
        self._token_head = 0
        self._syncing = False
        self.views = build_views(data, self._matrix, max_size=self.max_size, output_backend=output_backend)
        attach(self.views)
        self.bokeh_widget = BokehModel(self.views.layout)
        self._make_controls()
        pickers = [self.layer_picker, self.head_picker, self.anchor_list, self.tag_editor]
        if self.token_head_picker is not None:
            pickers.append(self.token_head_picker)
        controls = widgets.HBox(
            [widgets.VBox(pickers), self.tag_filter],
            layout=widgets.Layout(flex_flow="row wrap", max_width="840px"),
        )
        super().__init__([controls, self.bokeh_widget], layout=widgets.Layout(max_width="860px"))

    def _make_controls(self) -> None:
        data = self.data
        narrow = widgets.Layout(width="400px")
        self.layer_picker = widgets.Dropdown(
            options=[("receiver-head average", _AVERAGE)]
            + [(name, i) for i, name in enumerate(data.layer_labels)],
            value=_AVERAGE,
            description="layer",
            layout=narrow,
        )
        self.head_picker = widgets.Dropdown(
            options=[("mean of heads", _AVERAGE)] + [(name, i) for i, name in enumerate(data.head_labels)],
            value=_AVERAGE,
            description="head",
            disabled=True,
            layout=narrow,
        )
        order = data.top_anchors(data.n_sentences)
        unscored = [i for i in range(data.n_sentences) if not data.scored[i]]
        self.anchor_list = widgets.Dropdown(
            options=[("(no sentence selected)", _AVERAGE)]
            + [
                (f"#{i} {data.anchor_scores[i]:.3g} {data.tags[i]}: {data.sentences[i][:50]}", int(i))
                for i in order
            ]
            + [(f"#{i} not scored {data.tags[i]}: {data.sentences[i][:50]}", int(i)) for i in unscored],
            value=_AVERAGE,
            description="anchors",
            layout=narrow,
        )
        self.tag_editor = widgets.Dropdown(
            options=list(data.tag_vocabulary),
            value=None,
            description="tag",
            disabled=True,
            tooltip="correct the selected sentence's function tag",
            layout=narrow,
        )
        present = data.tags_present()
        self.tag_filter = widgets.SelectMultiple(
            options=present, value=tuple(present), description="show tags", rows=min(len(present), 9)
        )
        self.token_head_picker = None
        if data.token_view is not None:
            self.token_head_picker = widgets.Dropdown(
                options=[
                    (f"{data.layer_labels[layer]}, {data.head_labels[head]}", r)
                    for r, (layer, head) in enumerate(data.token_view.heads)
                ],
                value=0,
                description="token head",
                layout=narrow,
            )
            self.token_head_picker.observe(self._on_token_head, names="value")
        self.layer_picker.observe(self._on_picker, names="value")
        self.head_picker.observe(self._on_picker, names="value")
        self.anchor_list.observe(self._on_anchor_list, names="value")
        self.tag_filter.observe(self._on_tag_filter, names="value")
        self.tag_editor.observe(self._on_tag_editor, names="value")
        self.views.sentences.selected.on_change("indices", self._on_indices)

    # ------------------------------------------------------------------ state

    @property
    def selected(self) -> int | None:
        """Index of the selected sentence, or None."""
        return self._selected

    @property
    def layer_head(self) -> tuple[int | None, int | None]:
        """`(layer, head)` shown in the heatmap; None layer = receiver-head average, None head = mean."""
        return self._layer, self._head

    @property
    def matrix(self) -> np.ndarray:
        """The full-resolution `[S, S]` matrix behind the heatmap, tag summary and info panel."""
        return self._matrix

    @property
    def hidden_tags(self) -> set[str]:
        """Tags the tag filter dims."""
        return set(self._hidden)

    @property
    def corrections(self) -> dict:
        """The tag corrections made so far (and those the data came with), as the corrections JSON
        (`views.corrections`)."""
        return corrections_io.corrections_document(self.data)

    # ------------------------------------------------------------------ actions

    def select(self, i: int | None) -> None:
        """Select sentence `i` (None clears) in every view."""
        if i is not None:
            i = int(i)
            if not 0 <= i < self.data.n_sentences:
                raise ValueError(f"sentence {i} is out of range: pick 0..{self.data.n_sentences - 1} or None")
        if i == self._selected:
            return
        self._selected = i
        with self._sync():
            indices = [] if i is None else [i]
            if list(self.views.sentences.selected.indices) != indices:
                self.views.sentences.selected.indices = indices
            self.anchor_list.value = _AVERAGE if i is None else i
            self.tag_editor.disabled = i is None
            self.tag_editor.value = None if i is None else self.data.tags[i]
            self._feed_tokens()

    def set_layer_head(self, layer: int | None, head: int | None = None) -> None:
        """Show layer `layer`, head `head` (None layer: receiver-head average; None head: mean of heads).

        Swaps the one matrix in the Bokeh document, its strongest links, the tag x tag summary and the
        bars (the receiver-head anchor score, a layer's mean vertical score or one head's).
        """
        if layer is None or layer == _AVERAGE:
            layer, head = None, None
        elif head == _AVERAGE:
            head = None
        matrix = select_matrix(self.data, layer, head)  # validates the indices
        self._layer, self._head = layer, head
        self._matrix = matrix
        views = self.views
        with self._sync():
            views.heat.data = heat_data(matrix, self.max_size)
            views.links.data = links_data(matrix)
            views.tag_heat.data = tag_heat_data(self.data, matrix)
            views.state.data = state_data(self.data, matrix, layer, head, self.max_size)
            self._feed_sentences()
            self.layer_picker.value = _AVERAGE if layer is None else layer
            self.head_picker.value = _AVERAGE if head is None else head
            self.head_picker.disabled = layer is None

    def set_tag_filter(self, tags: Iterable[str]) -> None:
        """Show sentences with these function tags at full opacity and dim the others in all views."""
        shown = set(tags)
        present = set(self.data.tags_present())
        unknown = shown - present
        if unknown:
            raise ValueError(
                f"tag filter has tags {sorted(unknown)} that no sentence has; pick from {sorted(present)}"
            )
        self._hidden = present - shown
        with self._sync():
            self._feed_sentences()
            self.tag_filter.value = tuple(t for t in self.data.tags_present() if t in shown)

    def correct_tag(self, i: int, tag: str) -> None:
        """Set sentence `i`'s function tag to `tag` (one of `data.tag_vocabulary`) in every view; the
        correction is kept in `corrections` and written by `save_corrections`."""
        if not 0 <= int(i) < self.data.n_sentences:
            raise ValueError(f"sentence {i} is out of range: pick 0..{self.data.n_sentences - 1}")
        if tag not in self.data.tag_vocabulary:
            raise ValueError(f"tag {tag!r} is not in the tag vocabulary {list(self.data.tag_vocabulary)}")
        data = self.data
        if data.tagger_tags is None:
            data.tagger_tags = list(data.tags)
        data.tags[int(i)] = tag
        with self._sync():
            self._feed_sentences()
            present = data.tags_present()
            self.tag_filter.options = present
            self.tag_filter.value = tuple(t for t in present if t not in self._hidden)
            self.tag_filter.rows = min(len(present), 9)
            if self._selected == int(i):
                self.tag_editor.value = tag

    def save_corrections(self, path: str | os.PathLike) -> Path:
        """Write the tag corrections as JSON to `path` (a report folder gets `tag_corrections.json`, which
        `write_report` re-applies when it rebuilds the report there)."""
        return corrections_io.save_corrections(self.corrections, path)

    def set_token_head(self, r: int) -> None:
        """Show recorded head `r` (an index into `data.token_view.heads`) in the token view."""
        if self.data.token_view is None:
            raise ValueError("this data has no token view: trace with layers=[...], heads=[...] first")
        if not 0 <= int(r) < len(self.data.token_view.heads):
            raise ValueError(f"token head {r} is out of range: pick 0..{len(self.data.token_view.heads) - 1}")
        self._token_head = int(r)
        with self._sync():
            self._feed_tokens()
            self.token_head_picker.value = int(r)

    # ------------------------------------------------------------------ feeding the sources

    def _feed_sentences(self) -> None:
        scores = select_scores(self.data, self._layer, self._head)
        self.views.sentences.data = sentence_columns(self.data, scores, self._hidden)

    def _feed_tokens(self) -> None:
        if self.data.token_view is None:
            return
        image, state = token_data(self.data, self._token_head, self._selected)
        self.views.tokens.data = image
        self.views.token_state.data = state

    # ------------------------------------------------------------------ callbacks

    def _sync(self):
        explorer = self

        class _Guard:
            # Views updated by an action fire their own observers; the guard keeps those from
            # re-entering the action.
            def __enter__(self):
                self.previous = explorer._syncing
                explorer._syncing = True

            def __exit__(self, *exc):
                explorer._syncing = self.previous

        return _Guard()

    def _on_indices(self, attr, old, new) -> None:
        if self._syncing:
            return
        self.select(int(new[0]) if len(new) else None)

    def _on_picker(self, change) -> None:
        if self._syncing:
            return
        layer = self.layer_picker.value
        self.set_layer_head(None if layer == _AVERAGE else layer, self.head_picker.value)

    def _on_anchor_list(self, change) -> None:
        if self._syncing:
            return
        self.select(None if change["new"] == _AVERAGE else change["new"])

    def _on_tag_filter(self, change) -> None:
        if self._syncing:
            return
        self.set_tag_filter(change["new"])

    def _on_tag_editor(self, change) -> None:
        if self._syncing or self._selected is None or change["new"] is None:
            return
        if change["new"] != self.data.tags[self._selected]:
            self.correct_tag(self._selected, change["new"])

    def _on_token_head(self, change) -> None:
        if self._syncing:
            return
        self.set_token_head(change["new"])


def build_explorer(
    data: ExploreData, max_size: int = MAX_HEATMAP_SIZE, load: bool = True, output_backend: str = "canvas"
) -> Explorer:
    """Build the linked explorer of one trace.

    Args:
        data: Sentences, tags, scores and sentence attention (`ExploreData`).
        max_size: Largest heatmap side sent to the browser; longer traces are mean-pooled.
        load: Publish BokehJS into the notebook page first (`load_bokehjs`); False when the caller
            already did.
        output_backend: ``"canvas"`` (each figure's save tool writes PNG) or ``"svg"`` (it writes SVG).

    Returns:
        An `Explorer` (an `ipywidgets.VBox`); display it in a notebook, drive it with `select`,
        `set_layer_head`, `set_tag_filter`, `correct_tag` and `set_token_head`.
    """
    if load:
        load_bokehjs()
    return Explorer(data, max_size=max_size, output_backend=output_backend)


def load_bokehjs() -> None:
    """Put BokehJS into the notebook page, inlined (no CDN).

    jupyter_bokeh's widget view draws with the page's BokehJS; without it JupyterLab shows "Cannot read
    properties of undefined (reading 'require')" in place of the figures. The page runs the script
    while the cell goes on, so it must come a moment before the explorer is displayed:
    `stream_widgets.views.explore` calls it before computing the views, `build_explorer` (unless told the
    caller did) before building them. It is published with every explorer (about 1.5 MB of script in the
    cell's output) because a page opened or reloaded later has no BokehJS of its own. Outside IPython
    (scripts, tests) there is no page and it does nothing.
    """
    from IPython import get_ipython

    if get_ipython() is None:
        return
    from bokeh.io import output_notebook
    from bokeh.resources import INLINE

    output_notebook(resources=INLINE, hide_banner=True)
