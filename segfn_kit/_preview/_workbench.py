"""The preview workbench: one widget over one function and one frame of payloads.

The widget holds state and displays; the work is done by the same pure functions the CLI
and the tests call: ``segfn_kit._run.run`` (a function over a payload frame),
``segfn_kit._run.diff`` and ``segfn_kit._run.coverage``, ``segfn_kit._approve.approve``.
Markup comes from ``_render`` and ``_summary``, which need no widgets.

Only what is on screen is drawn: a refresh redraws the summary, the payload list and the
selected payload; the changes, coverage and plot tabs are drawn when opened. That keeps a
re-run over a thousand payloads quick enough to feel live.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import ipywidgets as widgets
import pandas as pd

from segfn_kit.runtime import Function, FunctionLoadError, Settings

from . import _render as r
from ._plots import coverage_png, outcomes_png
from ._summary import ResultView, RunSummary, category, summarize

__all__ = ["ALL", "Workbench", "filter_ids", "preview"]

ALL = "(all)"
# frames at least this long run in chunks, with a progress bar between them (shorter
# ones take well under a second)
PROGRESS_THRESHOLD = 5_000
_CHUNKS = 20

_TABS = ("Payloads", "Changes", "Coverage", "Plots", "Approve")


def _items(value: Any) -> list[Any]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return list(value)


def _is_problem(outcome: str, issues: Any) -> bool:
    return category(outcome) in ("invalid", "errored") or bool(_items(issues))


def filter_ids(
    results: pd.DataFrame,
    *,
    outcome: str | None = None,
    event_type: str | None = None,
    errors_only: bool = False,
    changed: Iterable[str] | None = None,
) -> list[str]:
    """The payload ids of a result frame that pass the preview's filters, in frame order.

    Args:
        results: a result frame.
        outcome: keep one outcome (``ok``, ``EventNotSupported``, ...) or one category
            (``mapped``, ``unsupported``, ``invalid``, ``errored``, ``dropped``).
        event_type: keep one incoming event type.
        errors_only: keep invalid and errored payloads, and those with spec problems.
        changed: keep only these ids (the ones whose output changed since the last run).

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"outcome": ["ok", "error"], "issues": [[], []],
        ...     "event_type": ["a", "b"]}, index=["p1", "p2"])
        >>> filter_ids(frame, errors_only=True)
        ['p2']
        >>> filter_ids(frame, outcome="mapped")
        ['p1']
    """
    ids = [str(i) for i in results.index]
    if not ids:
        return []
    outcomes = [str(o) for o in results["outcome"].tolist()]
    issues = results["issues"].tolist() if "issues" in results.columns else [None] * len(ids)
    types = results["event_type"].tolist() if "event_type" in results.columns else [None] * len(ids)
    keep_changed = set(changed) if changed is not None else None
    out = []
    for pid, out_, iss, typ in zip(ids, outcomes, issues, types, strict=True):
        if outcome not in (None, ALL) and out_ != outcome and category(out_) != outcome:
            continue
        if event_type not in (None, ALL) and _type_key(typ) != event_type:
            continue
        if errors_only and not _is_problem(out_, iss):
            continue
        if keep_changed is not None and pid not in keep_changed:
            continue
        out.append(pid)
    return out


def _type_key(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return "(no event type)"
    return str(value)


class Workbench(widgets.VBox):  # type: ignore[misc]
    """A live preview of a function over a payload frame (an ipywidgets ``VBox``).

    Build it with ``segfn_kit.preview(...)`` or the ``%%segfn`` cell magic. It runs the
    function over every payload and shows: a summary of outcomes and of which incoming event
    types produced which Segment events; a payload list with filters; the selected payload's
    body beside the events it produced, spec problems marked on the offending field; what
    changed since the previous run; coverage; plots; and an approve button.

    ``update(source)`` loads new function text and re-runs; a text that does not load shows
    its error (with the line) above the last good preview, which stays.

    Attributes:
        source: the current function text, exactly as written.
        function: the last function that loaded.
        payloads: the payload frame (or events frame, for destinations).
        results: the current result frame; ``previous``: the one before.
        load_error: the error of the last text that did not load (``None`` when it did).
        name: the function's name (the cell magic's NAME, or the file's stem).

    Example:
        >>> import pandas as pd
        >>> wb = Workbench("def on_request(request, settings):\\n    pass\\n",
        ...                pd.DataFrame(columns=["raw", "body", "headers", "event_type"]))
        >>> wb.summary.total
        0
    """

    def __init__(
        self,
        function: str | os.PathLike[str] | Function,
        payloads: Any,
        settings: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        directory: str | os.PathLike[str] | None = None,
        progress_threshold: int = PROGRESS_THRESHOLD,
        timeout: float | None = None,
        line_offset: int = 0,
        **run_options: Any,
    ) -> None:
        self._given_payloads = payloads
        # the frame as given until the function's kind is known (see _frame_for)
        self.payloads = payloads if isinstance(payloads, pd.DataFrame) else _empty_payloads()
        self._fields: tuple[pd.DataFrame, dict[str, dict[str, list[Any]]]] | None = None
        self._payload_kind: str | None = None
        _check_payloads(payloads)
        # passed on to run(): for destinations, responses=Responses(...), batch=True, ...
        self.run_options: dict[str, Any] = dict(run_options)
        if self.run_options.get("plan") is not None:
            # read and compiled once (a bad plan raises here, before anything runs)
            from segfn_kit._plan import load_plan

            self.run_options["plan"] = load_plan(self.run_options["plan"])
        self.settings_values: dict[str, Any] = dict(settings or {})
        self.name = name
        self.directory = Path(directory) if directory is not None else None
        self.progress_threshold = progress_threshold
        self.timeout = timeout
        self.source: str | None = None
        # lines above the function text where it is shown (1 under a %%segfn line)
        self.line_offset = line_offset
        self.filename: str | None = None
        self.function: Function | None = None
        self.results: pd.DataFrame | None = None
        self.previous: pd.DataFrame | None = None
        self.load_error: str | None = None
        self.run_seconds: float | None = None
        self.approved_file: Path | None = None
        self._summary: RunSummary | None = None
        self._changes: Any = None
        self._changed_ids: list[str] | None = None
        self._coverage: Any = None
        self._drawn: set[int] = set()
        self._build()
        super().__init__(children=self._layout_children())
        self.add_class("segfn-preview")
        self.update(function)

    # -- building the widgets ------------------------------------------------------------
    def _build(self) -> None:
        self.header = widgets.HTML()
        self.error_area = widgets.HTML()
        self.progress = widgets.IntProgress(
            min=0, max=1, value=0, description="running", layout=widgets.Layout(display="none", width="60%")
        )
        self.summary_html = widgets.HTML()
        self.outcome_filter = widgets.Dropdown(description="outcome", options=[ALL], value=ALL,
                                               layout=widgets.Layout(width="260px"))
        self.type_filter = widgets.Dropdown(description="event type", options=[ALL], value=ALL,
                                            layout=widgets.Layout(width="320px"))
        self.errors_only = widgets.Checkbox(description="errors only", value=False, indent=False,
                                            layout=widgets.Layout(width="110px"))
        self.changed_only = widgets.Checkbox(description="changed only", value=False, indent=False,
                                             layout=widgets.Layout(width="120px"))
        self.picker = widgets.Select(options=[], rows=16, layout=widgets.Layout(width="100%"))
        self.picker.add_class("segfn-picker")
        self.shown_count = widgets.HTML()
        self.full_body = widgets.Checkbox(description="show the whole body", value=False, indent=False)
        self.detail = widgets.HTML()
        self.detail.add_class("segfn-detail")
        self.changes_html = widgets.HTML()
        self.coverage_html = widgets.HTML()
        self.outcomes_image = widgets.Image(format="png")
        self.coverage_image = widgets.Image(format="png")
        self.plan_image = widgets.Image(format="png")
        self.approve_path = widgets.Text(description="file", layout=widgets.Layout(width="70%"))
        self.approve_button = widgets.Button(description="Approve these outputs", button_style="success",
                                             icon="check")
        self.approve_status = widgets.HTML()
        self.tabs = widgets.Tab(
            children=[
                widgets.HBox([
                    widgets.VBox(
                        [widgets.HBox([self.outcome_filter]), widgets.HBox([self.type_filter]),
                         widgets.HBox([self.errors_only, self.changed_only]), self.shown_count, self.picker],
                        layout=widgets.Layout(width="38%", min_width="280px"),
                    ),
                    widgets.VBox([self.full_body, self.detail], layout=widgets.Layout(width="62%")),
                ]),
                self.changes_html,
                self.coverage_html,
                widgets.VBox([self.outcomes_image, self.coverage_image, self.plan_image]),
                widgets.VBox([self.approve_path, self.approve_button, self.approve_status]),
            ]
        )
        for i, title in enumerate(_TABS):
            self.tabs.set_title(i, title)
        self.tabs.selected_index = 0
        for control in (self.outcome_filter, self.type_filter, self.errors_only, self.changed_only):
            control.observe(self._on_filter, names="value")
        self.picker.observe(self._on_pick, names="value")
        self.full_body.observe(self._on_pick, names="value")
        self.tabs.observe(self._on_tab, names="selected_index")
        self.approve_button.on_click(self._on_approve)

    def _layout_children(self) -> list[widgets.Widget]:
        return [self.header, self.error_area, self.progress, self.summary_html, self.tabs]

    # -- the state -----------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """``source`` or ``destination`` (from the function's handlers)."""
        return self.function.kind if self.function is not None else "source"

    @property
    def summary(self) -> RunSummary:
        """The current run's summary (outcome counts, what each event type produced)."""
        if self._summary is None:
            self._summary = summarize(self.results if self.results is not None else _empty_results())
        return self._summary

    @property
    def shown_ids(self) -> list[str]:
        """The payload ids the picker lists now (after the filters)."""
        return [value for _, value in self.picker.options]

    @property
    def selected(self) -> str | None:
        """The payload shown in the side-by-side view."""
        value = self.picker.value
        return str(value) if value is not None else None

    @property
    def changed_ids(self) -> list[str]:
        """Payloads whose output changed since the previous run (empty on the first run)."""
        self._ensure_changes()
        return list(self._changed_ids or [])

    @property
    def changes(self) -> Any:
        """``segfn_kit._run.diff(previous, results)``, or ``None`` before a second run."""
        self._ensure_changes()
        return self._changes

    @property
    def coverage(self) -> Any:
        """``segfn_kit._run.coverage`` of the current run."""
        if self._coverage is None and self.results is not None:
            from segfn_kit._run import coverage

            if self._fields is None or self._fields[0] is not self.payloads:
                # the payloads' fields: read once per payload frame, not again after each edit
                from segfn_kit._run import payload_fields

                self._fields = (self.payloads, payload_fields(self.payloads))
            self._coverage = coverage(self.results, self.payloads, fields=self._fields[1])
        return self._coverage

    def secret_values(self) -> list[str]:
        """Secret setting values, masked wherever the preview shows text."""
        if self.function is not None:
            return self.function.settings(self.settings_values).secret_values()
        return Settings(self.settings_values).secret_values()

    # -- actions -------------------------------------------------------------------------
    def update(self, function: str | os.PathLike[str] | Function | None = None) -> bool:
        """Load new function text (or a file, or a ``Function``) and re-run the preview.

        Returns:
            ``True`` when the function loaded and ran; ``False`` when it did not, in which
            case the error shows above the last good preview, which stays as it was.
        """
        if function is not None:
            try:
                loaded, source, filename = _load(function, self.name)
            except FunctionLoadError as exc:
                text = function if isinstance(function, str) and "\n" in function else None
                self.source = text if text is not None else self.source
                self._show_load_error(str(exc), text, exc.line)
                return False
            except SystemExit as exc:  # exit() at import must not end the kernel
                self._show_load_error(f"the module called exit({exc.code!r}) while loading", None, None)
                return False
            self.function, self.source, self.filename = loaded, source, filename
            if self.name is None:
                self.name = Path(filename).stem if not filename.startswith("<") else None
        if self.function is None:
            return False
        try:
            if self._payload_kind != self.function.kind:
                self.payloads = _frame_for(self._given_payloads, self.function.kind)
                self._payload_kind = self.function.kind
            results = self._run()
        except (Exception, SystemExit) as exc:  # the preview must survive whatever run raises
            self._show_load_error(f"{type(exc).__name__}: {exc}", None, None, title="the run failed")
            return False
        self.load_error = None
        self.error_area.value = ""
        self.previous, self.results = self.results, results
        self._summary = self._changes = self._changed_ids = self._coverage = None
        self.refresh()
        return True

    @property
    def plan(self) -> Any:
        """The tracking plan every event is held against (a ``runtime.Plan``), or ``None``."""
        return self.run_options.get("plan")

    def use_plan(self, plan: Any) -> None:
        """Hold the events against another tracking plan (or none), without running again.

        ``plan`` is anything ``segfn_kit.load_plan`` reads, or ``None``; the issues, the
        summary, the plot and the event cards refresh.

        Raises:
            PlanError: the plan cannot be used (the preview keeps the plan it had).
        """
        from segfn_kit._plan import PLAN_CODES, check_results, load_plan

        if plan is None:
            self.run_options.pop("plan", None)
        else:
            self.run_options["plan"] = load_plan(plan)
        if self.results is not None:
            results = self.results.copy()
            if plan is None:
                results["issues"] = [[i for i in issues if i.get("code") not in PLAN_CODES]
                                     for issues in results["issues"]]
                results.attrs.pop("plan", None)
            else:
                check_results(results, self.run_options["plan"])
            self.results = results
            self._summary = None
            self.refresh()
            self._draw_detail()

    def plan_markup(self) -> str:
        """The tracking plan's summary per rule as HTML (empty without a plan)."""
        if self.plan is None or self.results is None:
            return ""
        from ._planview import plan_html

        return plan_html(self.results)

    def use_payloads(self, payloads: Any) -> None:
        """Read these payloads from the next run on (the same frame object changes nothing)."""
        if payloads is self._given_payloads:
            return
        _check_payloads(payloads)
        self._given_payloads = payloads
        self._payload_kind = None

    def rerun(self) -> bool:
        """Run the current function again (after the payload frame or settings changed)."""
        return self.update(None)

    def select(self, payload_id: str) -> None:
        """Show one payload in the side-by-side view (clearing filters that hide it)."""
        if payload_id not in self.shown_ids:
            if self.results is None or payload_id not in self.results.index:
                raise KeyError(f"no payload {payload_id!r} in this preview")
            with self.hold_trait_notifications():
                self.outcome_filter.value = ALL
                self.type_filter.value = ALL
                self.errors_only.value = False
                self.changed_only.value = False
        self.picker.value = payload_id

    def approve(self, path: str | os.PathLike[str] | None = None, *, ids: Iterable[str] | None = None) -> Path:
        """Write the current outputs as the approved ones (``<name>.approved.jsonl``).

        A function written in a cell is saved beside them, verbatim, as ``<name>.py``, so the
        export finds the function and its approved outputs together.
        """
        from segfn_kit._approve import approve as write_approved

        if self.results is None:
            raise RuntimeError("nothing to approve: the function has not run yet")
        target = Path(path) if path is not None else self.default_approve_path()
        if self.filename is None or self.filename.startswith("<"):
            self.save_function(target.with_name(target.name.removesuffix(".approved.jsonl") + ".py"))
        written = write_approved(self.results, self.payloads, target, ids=ids, settings=self.settings_values)
        self.approved_file = written
        count = len(self.results) if ids is None else len(list(ids))
        self.approve_status.value = (
            f'<span style="color:#1a7f37">✓ approved {count} output(s) in <code>{r.esc(written)}</code></span>'
        )
        return written

    def unapproved_ids(self, path: str | os.PathLike[str] | None = None) -> list[str]:
        """Payloads whose current output differs from the approved one (or was never approved).

        Outcome, events and objects are compared (and requests, for destinations).
        """
        from segfn_kit._approve import ApprovedOutputError, load_approved

        if self.results is None:
            return []
        target = Path(path) if path is not None else self.default_approve_path()
        try:
            approved = {str(rec["payload_id"]): rec for rec in load_approved(target)}
        except ApprovedOutputError:
            approved = {}
        keys = ["outcome", "events", "objects"] + (["requests"] if self.kind == "destination" else [])
        secrets = self.secret_values()
        out = []
        for pid, row in zip(self.results.index, self.results.to_dict("records"), strict=True):
            record = approved.get(str(pid))
            current = {k: row.get(k) if k == "outcome" else _items(row.get(k)) for k in keys}
            # approved lines were written with secrets masked: compare like with like
            current_text = r.mask(json.dumps(current, sort_keys=True, default=str), secrets)
            approved_text = json.dumps({k: record.get(k) for k in keys}, sort_keys=True, default=str) if record else None
            if current_text != approved_text:
                out.append(str(pid))
        return out

    def approval_markup(self) -> str:
        """How the current outputs stand against the approved ones, as HTML."""
        target = Path(self.approve_path.value) if self.approve_path.value else self.default_approve_path()
        if not target.exists():
            return '<span style="color:#6e7781">nothing approved yet for this function</span>'
        differ = self.unapproved_ids(target)
        if not differ:
            return f'<span style="color:#1a7f37">✓ every output matches the approved ones in <code>{r.esc(target.name)}</code></span>'
        listed = ", ".join(r.esc(i) for i in differ[:20]) + (" …" if len(differ) > 20 else "")
        return (
            f'<span style="color:#9a6700">{len(differ):,} output(s) differ from the approved ones '
            f"in <code>{r.esc(target.name)}</code>: {listed}</span>"
        )

    def default_approve_path(self) -> Path:
        """``<stem>.approved.jsonl`` beside the function file, or ``<name>.approved.jsonl``."""
        from segfn_kit._approve import approved_path

        if self.filename and not self.filename.startswith("<"):
            return approved_path(self.filename)
        base = self.directory or Path.cwd()
        return base / f"{self.name or 'function'}.approved.jsonl"

    def save_function(self, path: str | os.PathLike[str]) -> Path:
        """Write the current function text, exactly as written, to ``path``."""
        if self.source is None:
            raise RuntimeError("no function text to save")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.source, encoding="utf-8", newline="")
        return target

    # -- running -------------------------------------------------------------------------
    def _run(self) -> pd.DataFrame:
        from segfn_kit._run import run

        assert self.function is not None
        # the workbench draws its own progress bar; tqdm's would land in the cell's stderr
        options: dict[str, Any] = {**self.run_options, "progress": False}
        if self.timeout is not None:
            options["timeout"] = self.timeout
        frame = self.payloads
        start = time.perf_counter()
        if len(frame) < self.progress_threshold:
            results = run(self.function, frame, settings=self.settings_values, **options)
        else:
            results = self._run_in_chunks(run, frame, options)
        self.run_seconds = time.perf_counter() - start
        return results

    def _run_in_chunks(self, run: Callable[..., pd.DataFrame], frame: pd.DataFrame, options: dict[str, Any]) -> pd.DataFrame:
        """Run chunk by chunk so the progress bar moves (the kernel sends each update at once)."""
        size = max(1, math.ceil(len(frame) / _CHUNKS))
        self.progress.max = len(frame)
        self.progress.value = 0
        self.progress.layout.display = ""
        parts: list[pd.DataFrame] = []
        try:
            if self.kind != "destination":
                # one run (the worker processes start once); the bar moves as results arrive
                def moved(done: int) -> None:
                    self.progress.value = min(len(frame), done)

                return run(self.function, frame, settings=self.settings_values, on_progress=moved, **options)
            for start in range(0, len(frame), size):
                parts.append(run(self.function, frame.iloc[start : start + size], settings=self.settings_values, **options))
                self.progress.value = min(len(frame), start + size)
        finally:
            self.progress.layout.display = "none"
        attrs = dict(parts[0].attrs)
        results = pd.concat(parts)
        results.attrs.update(attrs)
        return results

    # -- drawing -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw what is on screen from the current state."""
        secrets = self.secret_values()
        self.header.value = self._header_html()
        self.summary_html.value = r.mask(self.summary.html() + self.plan_markup(), secrets)
        self._refresh_filters()
        self._drawn = set()
        self._draw_tab(self.tabs.selected_index or 0)

    def _header_html(self) -> str:
        name = r.esc(self.name or "function")
        took = f" · ran in {self.run_seconds * 1000:.0f} ms" if self.run_seconds is not None else ""
        noun = "events" if self.kind == "destination" else "payloads"
        return (
            f'<div style="font-size:14px"><b>{name}</b> <span style="color:#6e7781">'
            f"{self.kind} function · {len(self.payloads):,} {noun}{took}</span></div>"
        )

    def _refresh_filters(self) -> None:
        results = self.results if self.results is not None else _empty_results()
        outcomes = sorted({str(o) for o in results["outcome"].tolist()})
        cats = [c for c in ("mapped", "unsupported", "invalid", "errored", "dropped")
                if any(category(o) == c for o in outcomes)]
        outcome_options = [ALL, *cats, *[o for o in outcomes if o not in cats]]
        types = sorted({_type_key(t) for t in results["event_type"].tolist()}) if "event_type" in results.columns else []
        with self.hold_trait_notifications():
            keep_outcome = self.outcome_filter.value if self.outcome_filter.value in outcome_options else ALL
            self.outcome_filter.options = outcome_options
            self.outcome_filter.value = keep_outcome
            type_options = [ALL, *types]
            keep_type = self.type_filter.value if self.type_filter.value in type_options else ALL
            self.type_filter.options = type_options
            self.type_filter.value = keep_type
        self._refresh_picker()

    def _refresh_picker(self) -> None:
        results = self.results if self.results is not None else _empty_results()
        changed = self.changed_ids if self.changed_only.value else None
        ids = filter_ids(
            results,
            outcome=self.outcome_filter.value,
            event_type=self.type_filter.value,
            errors_only=self.errors_only.value,
            changed=changed,
        )
        labels = self._labels(results, ids)
        previous = self.picker.value
        options = list(zip(labels, ids, strict=True))
        self.picker.unobserve(self._on_pick, names="value")
        try:
            self.picker.options = options
            self.picker.value = previous if previous in ids else (ids[0] if ids else None)
        finally:
            self.picker.observe(self._on_pick, names="value")
        total = len(results)
        if not total:
            self.shown_count.value = '<span style="color:#6e7781">no payloads in this frame</span>'
        else:
            self.shown_count.value = f'<span style="color:#6e7781">{len(ids):,} of {total:,} shown</span>'
        self._draw_detail()

    def _labels(self, results: pd.DataFrame, ids: list[str]) -> list[str]:
        if not ids:
            return []
        sub = results.loc[ids]
        outcomes = sub["outcome"].tolist()
        events = sub["events"].tolist() if "events" in sub.columns else [None] * len(ids)
        issues = sub["issues"].tolist() if "issues" in sub.columns else [None] * len(ids)
        types = sub["event_type"].tolist() if "event_type" in sub.columns else [None] * len(ids)
        icons = {"mapped": "✓", "unsupported": "-", "invalid": "✗", "errored": "✗", "dropped": "·"}
        labels = []
        for pid, outcome, evs, iss, typ in zip(ids, outcomes, events, issues, types, strict=True):
            icon = "⚠" if _items(iss) and outcome == "ok" else icons.get(category(str(outcome)), "✗")
            n = len(_items(evs))
            what = f"{n} event{'s' if n != 1 else ''}" if outcome == "ok" else str(outcome)
            kind = _type_key(typ)
            # ids named after their event type (one file per event) need not say it twice
            where = pid if kind in pid else f"{pid} · {kind}"
            labels.append(f"{icon} {where} → {what}")
        return labels

    def _draw_detail(self) -> None:
        self.detail.value = self.detail_html()

    def detail_html(self, payload_id: str | None = None) -> str:
        """The side-by-side view of one payload (the selected one by default), secrets masked."""
        payload_id = payload_id or self.selected
        if self.results is None or not len(self.results):
            return '<div style="color:#6e7781;padding:6px"><b>No payloads.</b> Nothing to show: the frame is empty.</div>'
        if payload_id is None:
            return '<div style="color:#6e7781;padding:6px">No payload matches these filters.</div>'
        payload = cast(pd.Series, self.payloads.loc[payload_id]) if payload_id in self.payloads.index else None
        view = ResultView(
            payload_id,
            cast(pd.Series, self.results.loc[payload_id]),
            payload,
            full_body=self.full_body.value,
            secret_values=self.secret_values(),
            source=self.source,
            line_offset=self.line_offset,
        )
        return view._repr_html_()

    def _draw_tab(self, index: int) -> None:
        if index in self._drawn:
            return
        self._drawn.add(index)
        secrets = self.secret_values()
        if index == 1:
            self.changes_html.value = r.mask(self.changes_markup(), secrets)
        elif index == 2:
            self.coverage_html.value = r.mask(self.coverage_markup(), secrets)
        elif index == 3:
            self.outcomes_image.value = outcomes_png(self.summary)
            self.coverage_image.value = coverage_png(self._unused_fields(), mapped=self.summary.counts["mapped"])
            if self.plan is not None and self.results is not None:
                from ._planview import plan_png

                self.plan_image.value = plan_png(self.results)
                self.plan_image.layout.display = ""
            else:
                self.plan_image.layout.display = "none"
        elif index == 4:
            if not self.approve_path.value:
                self.approve_path.value = str(self.default_approve_path())
            self.approve_status.value = self.approval_markup()

    def draw_all(self) -> None:
        """Draw every tab now (they are otherwise drawn when first opened)."""
        for index in range(len(_TABS)):
            self._draw_tab(index)

    # -- changes and coverage ------------------------------------------------------------
    def _ensure_changes(self) -> None:
        if self._changed_ids is not None:
            return
        if self.previous is None or self.results is None:
            self._changes, self._changed_ids = None, []
            return
        from segfn_kit._run import diff

        self._changes = diff(self.previous, self.results)
        self._changed_ids = _changed_from(self._changes)

    def changes_markup(self) -> str:
        """What changed since the previous run, as HTML."""
        from ._views import changes_html

        if self.previous is None:
            return '<div style="color:#6e7781;padding:6px">This is the first run: edit the function and run it again to see what changes.</div>'
        return changes_html(self.changes, self.changed_ids)

    def coverage_markup(self) -> str:
        """Coverage of the current run as HTML: unhandled event types, fields never used."""
        from ._views import coverage_html

        if self.results is None or not len(self.results):
            return '<div style="color:#6e7781;padding:6px">No payloads: nothing to cover.</div>'
        return coverage_html(self.coverage)

    def _unused_fields(self) -> dict[str, int]:
        from ._views import unused_field_counts

        if self.results is None or not len(self.results):
            return {}
        return unused_field_counts(self.coverage)

    # -- errors --------------------------------------------------------------------------
    def _show_load_error(self, message: str, source: str | None, line: int | None, *, title: str | None = None) -> None:
        self.load_error = message
        heading = title or ("this version does not load; the preview below is from the last one that did"
                            if self.results is not None else "the function does not load")
        self.error_area.value = r.mask(
            r.error_box(message, source=source, line=line, title=heading, line_offset=self.line_offset),
            self.secret_values(),
        )
        if self.results is None:
            self.refresh()

    # -- events --------------------------------------------------------------------------
    def _on_filter(self, change: dict[str, Any]) -> None:
        self._refresh_picker()

    def _on_pick(self, change: dict[str, Any]) -> None:
        self._draw_detail()

    def _on_tab(self, change: dict[str, Any]) -> None:
        if change["new"] is not None:
            self._draw_tab(int(change["new"]))

    def _on_approve(self, button: widgets.Button) -> None:
        try:
            self.approve(self.approve_path.value or None)
        except Exception as exc:  # shown to the analyst; the widget keeps working
            self.approve_status.value = r.error_box(str(exc), title="could not approve")

    # -- reprs ---------------------------------------------------------------------------
    def snapshot_html(self) -> str:
        """A static picture of the preview (summary and selected payload), for viewers without widgets."""
        parts = [self._header_html()]
        if self.error_area.value:
            parts.append(self.error_area.value)
        parts.append(self.summary_html.value)
        if self.results is not None and len(self.results):
            parts.append(self.detail.value)
        return r.mask("".join(parts), self.secret_values())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = dict(super()._repr_mimebundle_(**kwargs) or {})
        bundle["text/html"] = self.snapshot_html()
        bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        if self.results is None:
            state = f"not run: {self.load_error}" if self.load_error else "not run"
        else:
            state = repr(self.summary)
        return f"<Workbench {self.name or 'function'} ({self.kind}): {state}>"


def _changed_from(changes: Any) -> list[str]:
    from ._views import changed_ids

    return changed_ids(changes)


def _empty_results() -> pd.DataFrame:
    return pd.DataFrame(
        {"outcome": pd.Series([], dtype=object), "events": pd.Series([], dtype=object),
         "issues": pd.Series([], dtype=object), "event_type": pd.Series([], dtype=object)},
        index=pd.Index([], name="payload_id", dtype=object),
    )


def _check_payloads(payloads: Any) -> None:
    ok = isinstance(payloads, pd.DataFrame | str | os.PathLike) or (
        isinstance(payloads, list | tuple)
        and all(isinstance(p, str | os.PathLike | Mapping) for p in payloads)
    )
    if not ok:
        raise TypeError(
            "payloads must be a payload frame (segfn_kit.load_payloads(...)), a path, a list of "
            f"captured payloads, or (for a destination) events; got {type(payloads).__name__}"
        )


def _empty_payloads() -> pd.DataFrame:
    return pd.DataFrame(index=pd.Index([], name="payload_id", dtype=object))


def _frame_for(payloads: Any, kind: str) -> pd.DataFrame:
    """The frame a run of this kind reads, with the ids its result rows will carry.

    A destination's rows are events: a source run's result frame or a list of events is
    turned into an event frame first, so each result row finds its incoming event.
    """
    if kind == "destination":
        from segfn_kit._events import sample_events

        if isinstance(payloads, pd.DataFrame) and "event" in payloads.columns:
            return payloads
        sources = payloads if isinstance(payloads, list | tuple) and all(
            isinstance(p, str | os.PathLike) for p in payloads) else [payloads]
        events: pd.DataFrame = sample_events(*sources)
        return events
    if isinstance(payloads, pd.DataFrame):
        return payloads
    from segfn_kit._payloads import load_payloads

    items = [payloads] if isinstance(payloads, str | os.PathLike) else list(payloads)
    if items and all(isinstance(p, str | os.PathLike) for p in items):
        frame: pd.DataFrame = load_payloads(*items)
    else:
        frame = load_payloads(items)
    return frame


def _load(function: str | os.PathLike[str] | Function, name: str | None) -> tuple[Function, str, str]:
    if isinstance(function, Function):
        return function, function.source, function.filename
    if isinstance(function, os.PathLike) or (
        "\n" not in function and function.endswith((".py", ".mapping.json"))
    ):
        loaded = Function.from_file(function)
        return loaded, loaded.source, loaded.filename
    filename = f"<cell {name}>" if name else "<function>"
    return Function.from_source(function, filename=filename), function, filename


def preview(
    function: str | os.PathLike[str] | Function,
    payloads: Any,
    settings: Mapping[str, Any] | None = None,
    **options: Any,
) -> Workbench:
    """Preview a function over payloads in a widget; the same run as ``segfn run``.

    Args:
        function: a function file path, the function's text, or a loaded ``Function``.
        payloads: a payload frame from ``segfn_kit.load_payloads`` (or paths to load; for a
            destination function, a frame or list of spec events).
        settings: setting values for the function (secret ones are masked everywhere).
        **options: ``name`` (shown in the header and used for approved files), ``directory``
            (where a cell function's files are written on approve), ``timeout`` (seconds per
            invocation), ``progress_threshold`` (payloads from which a progress bar shows);
            anything else goes to ``run`` (for destinations: ``responses=Responses(...)``,
            ``batch=True``, ...).

    Returns:
        The workbench, an ipywidgets widget: display it, or read its state
        (``.results``, ``.summary``, ``.changed_ids``, ``.approve()``).

    Example:
        >>> import pandas as pd
        >>> wb = preview("def on_request(request, settings):\\n    pass\\n", pd.DataFrame(columns=["raw"]))
        >>> wb.summary.total
        0
    """
    return Workbench(function, payloads, settings, **options)
