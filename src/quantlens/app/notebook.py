"""The quantlens app: weights and activations of float and quantized models, in marimo.

Start it with `quantlens app [MODELS_OR_FOLDERS...]`, or with marimo directly:
`marimo run notebook.py -- --model=PATH --data-dir=DIR` (see quantlens.app.config).
Cells only wire widgets to quantlens.app functions and display their results. The Inspect tab
shows one model's weights and activations. The Compare tab compares a float model with its
quantized version. The display cells of each tab stop while the other tab is open.
"""

import marimo

__generated_with = "0.25.2"
# head.html sets a Content-Security-Policy that keeps the page from requesting other hosts.
# NOTE: marimo 0.25 adds html_head_file to the page in `marimo run` only, not in the editor.
app = marimo.App(width="medium", app_title="quantlens", html_head_file="head.html")


@app.cell
def _():
    import os

    import marimo as mo

    from quantlens import stats
    from quantlens.app import charts, choices, comparison, histogram_widget, session, views
    from quantlens.app.catalog import build_catalog
    from quantlens.app.config import AppConfig
    from quantlens.app.overview import overview_csv, overview_rows
    return (
        AppConfig,
        build_catalog,
        charts,
        choices,
        comparison,
        histogram_widget,
        mo,
        os,
        overview_csv,
        overview_rows,
        session,
        stats,
        views,
    )


@app.cell
def _(AppConfig, build_catalog, mo, os):
    config = AppConfig.from_sources(mo.cli_args().to_dict(), os.environ)
    catalog = build_catalog(config.model_paths)
    model_picker = mo.ui.dropdown(
        options=catalog.labels, value=catalog.default_label, label="Model"
    )
    return catalog, config, model_picker


@app.cell
def _(choices, mo):
    page_tabs = mo.ui.tabs({page.value: "" for page in choices.Page}, value=choices.Page.INSPECT.value)
    mo.vstack([mo.md("# quantlens"), page_tabs])
    return (page_tabs,)


@app.cell
def _(choices, page_tabs):
    page = choices.Page(page_tabs.value)
    return (page,)


@app.cell
def _(catalog, config, model_picker, session):
    loaded = (
        session.attempt(session.load_choice, catalog, model_picker.value, trust=config.trust)
        if model_picker.value is not None
        else session.Outcome(error="No model selected: choose one in the Model list.")
    )
    model = loaded.value.model if loaded.ok else None
    return loaded, model


@app.cell
def _(catalog, choices, loaded, mo, model, model_picker, page):
    mo.stop(page is not choices.Page.INSPECT)
    _problems = [mo.callout(problem, kind="warn") for problem in catalog.problems]
    if not catalog.choices:
        _status = mo.callout(
            "No models to list: start the app with model files or folders, "
            "e.g. `quantlens app model.onnx`.",
            kind="danger",
        )
    elif model is None:
        _status = mo.callout(loaded.error, kind="danger")
    else:
        _choice = loaded.value.choice
        _status = mo.md(
            f"{_choice.description or str(_choice.path)}: {model.format}, "
            f"{len(model.layers)} layers, {model.parameter_count:,} values."
        )
    mo.vstack([model_picker, _status, *_problems])
    return


@app.cell
def _(mo, session):
    source_picker = mo.ui.radio(
        options=list(session.SOURCES), value=session.SOURCE_CIFAR10, inline=True, label="Input"
    )
    # No start or stop: marimo would clamp an out-of-range index without a word, while the
    # capture reports it.
    cifar_index = mo.ui.number(step=1, value=0, label="CIFAR-10 test index (0-9999)")
    random_seed = mo.ui.number(step=1, value=0, label="Random seed")
    image_upload = mo.ui.file(
        filetypes=[".png", ".jpg", ".jpeg"], max_size=20_000_000, label="Image (PNG or JPEG)"
    )
    run_button = mo.ui.run_button(label="Run and capture", kind="success")
    return cifar_index, image_upload, random_seed, run_button, source_picker


@app.cell
def _(
    choices,
    cifar_index,
    config,
    image_upload,
    mo,
    page,
    random_seed,
    run_button,
    session,
    source_picker,
):
    mo.stop(page is not choices.Page.INSPECT)
    _controls = {
        session.SOURCE_CIFAR10: cifar_index,
        session.SOURCE_RANDOM: random_seed,
        session.SOURCE_UPLOAD: image_upload,
    }
    _notes = []
    if source_picker.value == session.SOURCE_CIFAR10:
        _problem = session.cifar10_problem(config.data_dir)
        if _problem is not None:
            _notes.append(
                mo.callout(
                    f"{_problem} Random input and uploaded images work without it.",
                    kind="danger",
                )
            )
    mo.vstack(
        [
            mo.md("## Activations"),
            source_picker,
            mo.hstack([_controls[source_picker.value], run_button], justify="start", align="end", wrap=True),
            *_notes,
        ]
    )
    return


@app.cell
def _(
    cifar_index,
    config,
    image_upload,
    loaded,
    random_seed,
    run_button,
    session,
    source_picker,
):
    # Gated by the run button without mo.stop: mo.stop would also stop the weights inspector,
    # which reads capture_outcome. Any change of model or input clears the capture.
    capture_outcome = None
    if run_button.value and not loaded.ok:
        capture_outcome = session.Outcome(
            error="the selected model did not load (the error is under the Model list). Choose another model."
        )
    elif run_button.value:
        capture_outcome = session.attempt(
            session.run_capture,
            loaded.value.choice,
            source=source_picker.value,
            index=cifar_index.value,
            seed=random_seed.value,
            upload=(image_upload.name(), image_upload.contents()) if image_upload.value else None,
            data_dir=config.data_dir,
            trust=config.trust,
        )
    capture = capture_outcome.value if capture_outcome is not None and capture_outcome.ok else None
    return capture, capture_outcome


@app.cell
def _(capture, capture_outcome, choices, mo, page, session):
    mo.stop(page is not choices.Page.INSPECT)
    mo.stop(
        capture_outcome is None,
        mo.md("Choose an input and press **Run and capture** to record every layer's output."),
    )
    if capture is None:
        _output = mo.callout(f"Capture failed: {capture_outcome.error}", kind="danger")
    else:
        _batch = capture.inputs
        _label = session.true_label(_batch)
        _predictions = session.attempt(session.top_predictions, capture, 3)
        _image = session.preview_png(_batch)
        _facts = [
            f"**Input:** {_batch.descriptions[0]}",
            f"**Label:** {_label}" if _label is not None else "**Label:** none",
            "**Top-3:** "
            + (
                ", ".join(f"{p.name} {100 * p.probability:.1f}%" for p in _predictions.value)
                if _predictions.ok
                else f"unavailable ({_predictions.error})"
            ),
            *[f"*{notice}*" for notice in session.capture_notices(capture)],
        ]
        _preview = mo.hstack(
            [
                mo.image(_image, width=128) if _image is not None else mo.md("*(random input: no image)*"),
                mo.md("  \n".join(_facts)),
            ],
            justify="start",
            gap=1.5,
        )
        _output = mo.vstack(
            [
                mo.callout(
                    mo.md(
                        f"Captured {len(capture)} tensors from {capture.model}. "
                        "Show **Activations** below to browse them in graph order."
                    ),
                    kind="success",
                ),
                _preview,
            ]
        )
    _output
    return


@app.cell
def _(capture, choices, mo):
    mode_switch = (
        mo.ui.radio(
            options=[option.value for option in choices.Mode],
            value=choices.Mode.WEIGHTS.value,
            inline=True,
            label="Show",
        )
        if capture is not None
        else None
    )
    return (mode_switch,)


@app.cell
def _(choices, mo, model):
    layer_picker = mo.ui.dropdown(
        options=choices.layer_options(model) if model is not None else {},
        value=choices.default_layer_label(model) if model is not None else None,
        label="Layer",
    )
    return (layer_picker,)


@app.cell
def _(choices, layer_picker, mo, model):
    _layer = (
        model.layer(layer_picker.value)
        if model is not None and layer_picker.value in model.layer_names
        else None
    )
    _options = choices.tensor_options(_layer) if _layer is not None else {}
    tensor_picker = mo.ui.dropdown(
        options=_options, value=next(iter(_options), None), label="Tensor"
    )
    return (tensor_picker,)


@app.cell
def _(capture, choices, layer_picker, mo, model):
    activation_picker = None
    if capture is not None and model is not None:
        activation_picker = mo.ui.dropdown(
            options=choices.activation_options(capture),
            value=choices.default_activation_label(capture, model, layer_picker.value),
            label="Activation (graph order)",
        )
    return (activation_picker,)


@app.cell
def _(mo, views):
    view_switch = mo.ui.radio(
        options=[views.VIEW_VALUES, views.VIEW_CODES],
        value=views.VIEW_VALUES,
        inline=True,
        label="View",
    )
    bins_slider = mo.ui.slider(
        start=10, stop=200, step=5, value=50, show_value=True, label="Bins"
    )
    return bins_slider, view_switch


@app.cell
def _(
    activation_picker,
    capture,
    choices,
    layer_picker,
    mode_switch,
    model,
    session,
    tensor_picker,
):
    mode = choices.Mode(mode_switch.value) if mode_switch is not None else choices.Mode.WEIGHTS
    picked = (
        session.attempt(
            choices.pick_subject,
            model,
            mode=mode,
            layer_name=layer_picker.value,
            tensor_name=tensor_picker.value,
            result=capture,
            activation_name=activation_picker.value if activation_picker is not None else None,
        )
        if model is not None
        else session.Outcome()
    )
    subject = picked.value.subject if picked.ok and picked.value is not None else None
    return mode, picked, subject


@app.cell
def _(
    activation_picker,
    bins_slider,
    choices,
    layer_picker,
    mo,
    mode,
    mode_switch,
    model,
    page,
    picked,
    subject,
    tensor_picker,
    view_switch,
):
    mo.stop(model is None or page is not choices.Page.INSPECT)
    if mode is choices.Mode.ACTIVATIONS:
        _selectors = [activation_picker]
    else:
        _selectors = [layer_picker, tensor_picker]
    _rows = [
        mo.md("## Inspect"),
        mode_switch if mode_switch is not None else mo.md("*Run a capture above to inspect activations too.*"),
        mo.hstack(_selectors, justify="start", gap=1, wrap=True),
    ]
    if subject is not None and subject.tensor.is_quantized:
        _rows.append(view_switch)
    _rows.append(bins_slider)
    if not picked.ok:
        _rows.append(mo.callout(picked.error, kind="danger"))
    elif subject is None:
        _rows.append(mo.md("*Choose a layer and a tensor.*"))
    mo.vstack(_rows)
    return


@app.cell
def _(subject, view_switch, views):
    integer = subject is not None and views.uses_codes(subject.tensor, view_switch.value)
    summary = views.summarize_view(subject.tensor, integer) if subject is not None else None
    return integer, summary


@app.cell
def _(mo, subject, summary, views):
    mo.stop(subject is None)
    _low, _high = views.default_range(summary)
    range_form = (
        mo.md("**Value range** {low} to {high}")
        .batch(
            # Text fields: a number input drops the e of 1e-5 as it is typed.
            low=mo.ui.text(value=f"{_low:.6g}", label="min"),
            high=mo.ui.text(value=f"{_high:.6g}", label="max"),
        )
        .form(submit_button_label="Apply range", bordered=False)
    )
    return (range_form,)


@app.cell
def _(
    bins_slider,
    choices,
    histogram_widget,
    integer,
    mo,
    page,
    range_form,
    subject,
    views,
):
    mo.stop(subject is None or page is not choices.Page.INSPECT)
    _values = views.view_values(subject.tensor, integer=integer)
    _histogram = views.view_histogram(_values, bins_slider.value, integer=integer)
    _spec = histogram_widget.histogram_spec(
        _histogram,
        kind=subject.kind,
        title=subject.title(integer=integer),
        x_title=views.axis_title(_histogram, integer=integer),
        highlight=views.submitted_range(range_form.value),
        integer=integer,
    )
    histogram_plot = mo.ui.anywidget(histogram_widget.HistogramWidget(spec=_spec))
    histogram_plot
    return (histogram_plot,)


@app.cell
def _(
    histogram_plot,
    histogram_widget,
    integer,
    mo,
    range_form,
    session,
    stats,
    subject,
    views,
):
    mo.stop(subject is None)
    _values = views.view_values(subject.tensor, integer=integer)
    _lines = []
    for _name, _bounds in (
        ("Applied range", views.submitted_range(range_form.value)),
        ("Dragged range", histogram_widget.dragged_range(histogram_plot.value.get("selection"))),
    ):
        if _bounds is None:
            continue
        _count = session.attempt(stats.count_in_range, _values, *_bounds)
        if _count.ok:
            _lines.append(
                f"**{_name}** [{_bounds[0]:.6g}, {_bounds[1]:.6g}]: "
                f"{_count.value.inside:,} of {_count.value.total:,} elements inside "
                f"({_count.value.percent:.2f}%)"
            )
        else:
            _lines.append(f"**{_name}**: {_count.error}")
    _hint = "Drag across the histogram to count the elements in a range."
    _range_error = views.range_error(range_form.value)
    mo.vstack(
        [
            range_form,
            *([mo.callout(_range_error, kind="warn")] if _range_error is not None else []),
            mo.md("  \n".join(_lines) if _lines else f"*{_hint}*"),
        ]
    )
    return


@app.cell
def _(choices, integer, mo, page, subject, summary, views):
    mo.stop(subject is None or page is not choices.Page.INSPECT)
    _heading = f"### {subject.noun} statistics"
    _table = mo.ui.table(
        views.statistics_rows(subject, summary, integer=integer),
        selection=None,
        pagination=False,
        show_download=False,
        show_search=False,
        show_column_summaries=False,
        show_data_types=False,
    )
    _channels = views.channel_rows(subject.tensor)
    _items = [mo.md(_heading), _table]
    if _channels:
        _items.append(mo.md(f"**Per-channel quantization** ({len(_channels)} channels, axis {subject.tensor.quantization.axis})"))
        _items.append(
            mo.ui.table(
                _channels,
                selection=None,
                page_size=16,
                show_column_summaries=False,
                show_data_types=False,
            )
        )
    # Below the first histogram: drawn when scrolled into view, so the page's first chart is not
    # delayed by tables and charts the reader has not reached yet.
    mo.lazy(mo.vstack(_items))
    return


@app.cell
def _(charts, choices, mo, page, session, subject, views):
    mo.stop(subject is None or not subject.tensor.is_quantized or page is not choices.Page.INSPECT)
    _view = session.attempt(views.code_view, subject.tensor)
    if not _view.ok:
        _output = mo.callout(_view.error, kind="danger")
    else:
        _saturation = _view.value.saturation
        _items = [
            mo.md(
                f"**Saturation**: {_saturation.percent_at_qmin:.3g}% of codes at qmin "
                f"({_saturation.qmin}), {_saturation.percent_at_qmax:.3g}% at qmax ({_saturation.qmax})"
            )
        ]
        if _view.value.histogram is not None:
            _quant = subject.tensor.quantization
            _figure = charts.integer_code_figure(
                _view.value.histogram,
                kind=subject.kind,
                title=f"{subject.noun} integer codes of {subject.tensor.name} "
                f"({_quant.storage_dtype}, qmin {_quant.qmin}, qmax {_quant.qmax})",
                saturation=_saturation,
            )
            _items.insert(0, mo.ui.plotly(_figure))
        if _view.value.note:
            _items.append(mo.md(f"*{_view.value.note}*"))
        _output = mo.vstack(_items)
    mo.lazy(_output)
    return


@app.cell
def _(charts, choices, integer, mo, page, stats, subject, views):
    mo.stop(subject is None or not views.has_channel_chart(subject) or page is not choices.Page.INSPECT)
    _axis = views.output_channel_axis(subject.op_type, subject.tensor)
    _low, _high = stats.channel_ranges(views.view_values(subject.tensor, integer=integer), _axis)
    mo.lazy(
        mo.ui.plotly(
            charts.channel_range_figure(
                _low,
                _high,
                kind=subject.kind,
                title=f"Per-channel range of {subject.tensor.name}",
                axis=_axis,
                y_title=views.VIEW_CODES if integer else "value",
            )
        )
    )
    return


@app.cell
def _(bins_slider, choices, histogram_widget, mo, mode, page, picked, stats):
    mo.stop(page is not choices.Page.INSPECT)
    mo.stop(mode is not choices.Mode.ACTIVATIONS or not picked.ok or picked.value is None)
    _match = picked.value.match
    if _match is None or _match.layer is None:
        _output = mo.callout(_match.warning if _match is not None else "No layer matched.", kind="warn")
    else:
        _weight = choices.matching_weight(_match)
        _items = [mo.md(f"### Weights of the producing layer\n{choices.weight_note(_match)}")]
        if _weight is not None:
            _items.append(
                mo.ui.anywidget(
                    histogram_widget.HistogramWidget(
                        spec=histogram_widget.histogram_spec(
                            stats.histogram(_weight.tensor.values, bins_slider.value),
                            kind=_weight.kind,
                            title=_weight.title(integer=False),
                            x_title="value",
                            selectable=False,
                        )
                    )
                )
            )
        _output = mo.vstack(_items)
    _output
    return


@app.cell
def _(choices, loaded, mo, model, overview_csv, overview_rows, page, session, views):
    mo.stop(model is None or page is not choices.Page.INSPECT)
    _rows = session.attempt(overview_rows, model)
    if not _rows.ok:
        _body = mo.callout(_rows.error, kind="danger")
    else:
        _body = mo.vstack(
            [
                mo.ui.table(
                    list(_rows.value),
                    selection=None,
                    page_size=25,
                    show_column_summaries=False,
                    format_mapping={
                        column: views.format_value
                        for column in ("min", "max", "mean", "std", "zeros_percent")
                    },
                ),
                mo.download(
                    data=overview_csv(_rows.value).encode("utf-8"),
                    filename=f"{loaded.value.choice.path.stem}_overview.csv",
                    mimetype="text/csv",
                    label="Download CSV",
                ),
            ]
        )
    mo.lazy(mo.vstack([mo.md("## Overview of all layers"), _body]))
    return


@app.cell
def _(catalog, comparison, mo):
    _float_label, _quant_label = comparison.default_pair(catalog)
    float_picker = mo.ui.dropdown(options=catalog.labels, value=_float_label, label="Float model")
    quant_picker = mo.ui.dropdown(options=catalog.labels, value=_quant_label, label="Quantized model")
    compare_source = mo.ui.radio(
        options=list(comparison.INPUTS), value=comparison.INPUT_NONE, label="Compare on"
    )
    compare_start = mo.ui.number(
        step=1, value=0, label=f"First CIFAR-10 test index (0-{comparison.CIFAR10_TEST_SIZE - 1})"
    )
    compare_count = mo.ui.number(
        step=1, value=comparison.DEFAULT_IMAGES, label=f"Images (1-{comparison.MAX_IMAGES})"
    )
    compare_seed = mo.ui.number(step=1, value=0, label="Random seed")
    compare_button = mo.ui.run_button(label="Compare models", kind="success")
    return (
        compare_button,
        compare_count,
        compare_seed,
        compare_source,
        compare_start,
        float_picker,
        quant_picker,
    )


@app.cell
def _(
    choices,
    compare_button,
    compare_count,
    compare_seed,
    compare_source,
    compare_start,
    comparison,
    config,
    float_picker,
    mo,
    page,
    quant_picker,
    session,
):
    mo.stop(page is not choices.Page.COMPARE)
    _controls = {
        comparison.INPUT_NONE: [],
        comparison.INPUT_CIFAR10: [compare_start, compare_count],
        comparison.INPUT_RANDOM: [compare_seed],
    }
    _notes = []
    if compare_source.value == comparison.INPUT_CIFAR10:
        _problem = session.cifar10_problem(config.data_dir)
        if _problem is not None:
            _notes.append(
                mo.callout(f"{_problem} Weights only and random input work without it.", kind="danger")
            )
    mo.vstack(
        [
            mo.md("## Compare a float model with its quantized version"),
            mo.hstack([float_picker, quant_picker], justify="start", gap=1, wrap=True),
            compare_source,
            mo.hstack([*_controls[compare_source.value], compare_button], justify="start", align="end", wrap=True),
            *_notes,
        ]
    )
    return


@app.cell
def _(
    catalog,
    compare_button,
    compare_count,
    compare_seed,
    compare_source,
    compare_start,
    comparison,
    config,
    float_picker,
    mo,
    quant_picker,
    session,
):
    mo.stop(not compare_button.value)
    compare_outcome = session.attempt(
        comparison.run_comparison,
        catalog,
        float_picker.value,
        quant_picker.value,
        source=compare_source.value,
        start=compare_start.value,
        count=compare_count.value,
        seed=compare_seed.value,
        data_dir=config.data_dir,
        trust=config.trust,
    )
    return (compare_outcome,)


@app.cell
def _(choices, compare_outcome, comparison, mo, page):
    mo.stop(page is not choices.Page.COMPARE)
    if not compare_outcome.ok:
        _output = mo.callout(f"Comparison failed: {compare_outcome.error}", kind="danger")
    else:
        _report = compare_outcome.value
        _unmatched = comparison.unmatched_rows(_report)
        _ranked = comparison.ranked_rows(_report)
        _output = mo.vstack(
            [
                mo.md(comparison.summary_text(_report)),
                *[mo.callout(_warning, kind="warn") for _warning in comparison.model_warnings(_report)],
                mo.ui.plotly(comparison.sqnr_figure(_report)),
                mo.md("### Matched layers, worst first"),
                mo.ui.table(
                    _ranked,
                    selection=None,
                    page_size=25,
                    format_mapping=comparison.table_formats(_ranked),
                    show_column_summaries=False,
                    show_data_types=False,
                ),
                mo.md("### Unmatched layers"),
                mo.ui.table(_unmatched, selection=None, show_column_summaries=False, show_data_types=False)
                if _unmatched
                else mo.md("*Every layer of both models is matched.*"),
                *[mo.md(f"*Note: {_note}*") for _note in _report.notes],
            ]
        )
    _output
    return


@app.cell
def _(compare_outcome, comparison, mo):
    compare_layer_picker = None
    if compare_outcome.ok:
        compare_layer_picker = mo.ui.dropdown(
            options=comparison.layer_options(compare_outcome.value),
            value=comparison.default_layer_label(compare_outcome.value),
            label="Matched layer (graph order)",
        )
    return (compare_layer_picker,)


@app.cell
def _(choices, compare_layer_picker, compare_outcome, comparison, mo, page, session):
    mo.stop(page is not choices.Page.COMPARE or compare_layer_picker is None)
    _items = [mo.md("### Weights of one matched layer"), compare_layer_picker]
    if compare_layer_picker.value is None:
        _items.append(mo.md("*Choose a matched layer to see its float and dequantized weights.*"))
    else:
        _result = session.attempt(comparison.layer_result, compare_outcome.value, compare_layer_picker.value)
        _figures = session.attempt(comparison.layer_figures, _result.value) if _result.ok else _result
        if _result.ok:
            _items.append(mo.md(comparison.layer_facts(_result.value)))
        if _figures.ok:
            _items.append(
                mo.hstack(
                    [mo.ui.plotly(_figures.value.overlay), mo.ui.plotly(_figures.value.scatter)],
                    widths="equal",
                )
            )
        else:
            _items.append(mo.callout(_figures.error, kind="warn"))
    mo.vstack(_items)
    return


if __name__ == "__main__":
    app.run()
