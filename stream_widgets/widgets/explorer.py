"""The notebook explorer: linked Bokeh views inside ipywidgets, driven from Python.

`build_explorer(data)` returns an `Explorer`, an `ipywidgets.VBox` holding the controls (layer and
head pickers, a tag filter, an anchor list) above the Bokeh views of `figures.build_views`, embedded
through `jupyter_bokeh.BokehModel`; below them, the needle route view when the data has a route. Every
change, from a control, a tapped bar, a tapped heatmap cell, a tapped route edge or a clicked sentence,
goes through `Explorer.select`, `Explorer.set_layer_head` or
`Explorer.set_tag_filter`, which update all views; the same methods drive it from code and tests.

Only the current `[n, n]` matrix (pooled to at most `max_size` per axis) is ever in the Bokeh document;
changing layer or head swaps it from Python.
"""

from __future__ import annotations

from collections.abc import Iterable

import ipywidgets as widgets
import numpy as np
from bokeh.events import Tap
from jupyter_bokeh import BokehModel

from stream_widgets.widgets.data import ExploreData
from stream_widgets.widgets.figures import (
    DIMMED_ALPHA,
    MAX_HEATMAP_SIZE,
    build_views,
    heat_data,
    highlight_data,
    info_html,
    tag_heat_values,
    text_html,
)
from stream_widgets.widgets.matrices import color_high, matrix_label, select_matrix

__all__ = ["Explorer", "build_explorer", "load_bokehjs"]

_AVERAGE = -1  # picker value for "receiver-head average" (layer) and "mean of heads" (head)


class Explorer(widgets.VBox):
    """Linked views of one trace; an ipywidget, so a notebook cell that returns it shows it.

    Attributes:
        data: The `ExploreData` shown.
        views: The Bokeh models (`figures.Views`).
        bokeh_widget: The `jupyter_bokeh.BokehModel` wrapping `views.layout`.
        layer_picker, head_picker: `ipywidgets.Dropdown`s; -1 means the receiver-head average / the
            mean over heads.
        tag_filter: `ipywidgets.SelectMultiple` of the tags shown at full opacity.
        anchor_list: `ipywidgets.Dropdown` of all sentences, best anchor first; picking one selects it.
    """

    def __init__(self, data: ExploreData, max_size: int = MAX_HEATMAP_SIZE) -> None:
        if not isinstance(data, ExploreData):
            raise TypeError(f"build_explorer needs an ExploreData, got {type(data).__name__}")
        self.data = data
        self.max_size = int(max_size)
        self._layer: int | None = None
        self._head: int | None = None
        self._matrix = select_matrix(data, None, None)
        self._label = matrix_label(data, None, None)
        self._selected: int | None = None
        self._hidden: set[str] = set()
        self._syncing = False
        self.views = build_views(data, self._matrix, self._label, self.max_size)
        self.bokeh_widget = BokehModel(self.views.layout)
        self._make_controls()
        controls = widgets.HBox(
            [widgets.VBox([self.layer_picker, self.head_picker, self.anchor_list]), self.tag_filter]
        )
        super().__init__([controls, self.bokeh_widget])

    def _make_controls(self) -> None:
        data = self.data
        self.layer_picker = widgets.Dropdown(
            options=[("receiver-head average", _AVERAGE)]
            + [(name, i) for i, name in enumerate(data.layer_labels)],
            value=_AVERAGE,
            description="layer",
        )
        self.head_picker = widgets.Dropdown(
            options=[("mean of heads", _AVERAGE)] + [(name, i) for i, name in enumerate(data.head_labels)],
            value=_AVERAGE,
            description="head",
            disabled=True,
        )
        order = np.argsort(-data.anchor_scores, kind="stable")
        self.anchor_list = widgets.Dropdown(
            options=[("(no sentence selected)", _AVERAGE)]
            + [
                (f"#{i} {data.anchor_scores[i]:.3g} {data.tags[i]}: {data.sentences[i][:50]}", int(i))
                for i in order
            ],
            value=_AVERAGE,
            description="anchors",
            layout=widgets.Layout(width="520px"),
        )
        present = data.tags_present()
        self.tag_filter = widgets.SelectMultiple(
            options=present, value=tuple(present), description="tags", rows=min(len(present), 9)
        )
        self.layer_picker.observe(self._on_picker, names="value")
        self.head_picker.observe(self._on_picker, names="value")
        self.anchor_list.observe(self._on_anchor_list, names="value")
        self.tag_filter.observe(self._on_tag_filter, names="value")
        self.views.sentences.selected.on_change("indices", self._on_indices)
        self.views.heat_figure.on_event(Tap, self._on_heat_tap)
        if self.views.route_edges is not None:
            self.views.route_edges.selected.on_change("indices", self._on_route_edge)

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

    # ------------------------------------------------------------------ actions

    def select(self, i: int | None) -> None:
        """Select sentence `i` (None clears) in every view and show it in the info panel."""
        if i is not None:
            i = int(i)
            if not 0 <= i < self.data.n_sentences:
                raise ValueError(f"sentence {i} is out of range: pick 0..{self.data.n_sentences - 1} or None")
        if i == self._selected:
            return
        self._selected = i
        with self._sync():
            views = self.views
            indices = [] if i is None else [i]
            if list(views.sentences.selected.indices) != indices:
                views.sentences.selected.indices = indices
            views.highlight.data = highlight_data(self.data.n_sentences, i)
            views.text_div.text = text_html(self.data, views.sentences.id, i, self._hidden)
            views.info_div.text = info_html(self.data, self._matrix, i, self._label)
            self.anchor_list.value = _AVERAGE if i is None else i

    def set_layer_head(self, layer: int | None, head: int | None = None) -> None:
        """Show layer `layer`, head `head` (None layer: receiver-head average; None head: mean of heads).

        Swaps the one matrix in the Bokeh document, the tag x tag summary and the info panel.
        """
        if layer is None or layer == _AVERAGE:
            layer, head = None, None
        elif head == _AVERAGE:
            head = None
        matrix = select_matrix(self.data, layer, head)  # validates the indices
        self._layer, self._head = layer, head
        self._matrix = matrix
        self._label = matrix_label(self.data, layer, head)
        views = self.views
        with self._sync():
            views.heat.data = heat_data(matrix, self.max_size)
            views.heat_mapper.high = color_high(matrix)
            values = tag_heat_values(self.data, matrix)
            views.tag_heat.data["value"] = values
            views.tag_mapper.high = max((v for v in values if np.isfinite(v)), default=1.0) or 1.0
            views.heat_figure.title.text = f"sentence attention: {self._label}"
            views.info_div.text = info_html(self.data, matrix, self._selected, self._label)
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
        views = self.views
        alpha = [DIMMED_ALPHA if t in self._hidden else 1.0 for t in self.data.tags]
        with self._sync():
            views.sentences.data["alpha"] = alpha
            views.sentences.data["alpha_dim"] = [0.45 * a for a in alpha]
            views.text_div.text = text_html(self.data, views.sentences.id, self._selected, self._hidden)
            self.tag_filter.value = tuple(t for t in self.data.tags_present() if t in shown)

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

    def _on_heat_tap(self, event: Tap) -> None:
        if event.x is None or not 0 <= event.x < self.data.n_sentences:
            return
        self.select(int(event.x))

    def _on_route_edge(self, attr, old, new) -> None:
        if self._syncing or not len(new):
            return
        sentence = self.views.route_edges.data["sentence"][int(new[0])]
        if sentence >= 0:
            self.select(sentence)

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


def build_explorer(data: ExploreData, max_size: int = MAX_HEATMAP_SIZE, load: bool = True) -> Explorer:
    """Build the linked explorer of one trace.

    Args:
        data: Sentences, tags, scores and sentence attention (`ExploreData`).
        max_size: Largest heatmap side sent to the browser; longer traces are mean-pooled.
        load: Publish BokehJS into the notebook page first (`load_bokehjs`); False when the caller
            already did.

    Returns:
        An `Explorer` (an `ipywidgets.VBox`); display it in a notebook, drive it with `select`,
        `set_layer_head` and `set_tag_filter`.
    """
    if load:
        load_bokehjs()
    return Explorer(data, max_size=max_size)


def load_bokehjs() -> None:
    """Put BokehJS into the notebook page, inlined (no CDN).

    jupyter_bokeh's widget view draws with the page's BokehJS; without it JupyterLab shows "Cannot read
    properties of undefined (reading 'require')" in place of the figures. The page runs the script
    while the cell goes on, so it must come a moment before the explorer is displayed:
    `stream_widgets.explore` calls it before computing the views, `build_explorer` (unless told the
    caller did) before building them. It is published with every explorer (about 1.5 MB of script in the cell's output)
    because a page opened or reloaded later has no BokehJS of its own. Outside IPython (scripts, tests)
    there is no page and it does nothing.
    """
    from IPython import get_ipython

    if get_ipython() is None:
        return
    from bokeh.io import output_notebook
    from bokeh.resources import INLINE

    output_notebook(resources=INLINE, hide_banner=True)
