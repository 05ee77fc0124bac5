"""Self-contained HTML reports: one page per case and one page per batch.

Pages carry their own CSS and embed their images as base64 PNG, so a report can be mailed,
archived or opened offline and prints cleanly. Every value inserted is HTML-escaped. The pages
are built from the case summaries that :mod:`ichseg.report.outputs` writes as JSON, so the page
and the JSON always agree. A case whose mask tells hemorrhage types apart adds a table of the
types (each in its preview colour), ABC/2 of the largest intraparenchymal hematoma and the ICH
score's imaging items; a one-class page is what it always was.
"""

from __future__ import annotations

import base64
import datetime
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from ichseg.clinical.measures import (
    ICH_SCORE_VOLUME_ML,
    CaseMeasures,
    HematomaABC2,
    SubtypeMeasures,
)
from ichseg.labels import SUBTYPE_NAMES
from ichseg.palette import class_color
from ichseg.report.summary import CaseSummary
from ichseg.version import __version__

DISCLAIMER = ("Research software. The segmentation is automatic and may be wrong: check it on the "
              "images before using any figure on this page.")

_CSS = """
:root { --ink: #1d2430; --muted: #5b6576; --line: #d9dee6; --soft: #f3f5f8; --accent: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; font-size: 15px; line-height: 1.45;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 40px; }
header { border-bottom: 3px solid var(--accent); padding-bottom: 10px; margin-bottom: 18px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 26px 0 8px; padding-bottom: 4px;
     border-bottom: 1px solid var(--line); }
.sub { color: var(--muted); margin: 0; font-size: 13px; }
.warning { background: #fff6e5; border: 1px solid #f0c36d; border-radius: 6px; padding: 8px 12px;
           font-size: 13px; margin: 12px 0 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px;
        background: var(--soft); }
.card .label { font-size: 12px; text-transform: uppercase; letter-spacing: .04em;
               color: var(--muted); }
.card .value { font-size: 26px; font-weight: 650; margin: 2px 0;
               font-variant-numeric: tabular-nums; }
.card .note { font-size: 13px; color: var(--muted); }
.card.primary { border-color: var(--accent); background: #fdf1f0; }
.card.flag .value { color: var(--accent); }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 0 28px; }
@media (max-width: 760px) { .grid2 { grid-template-columns: 1fr; } }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { width: 42%; background: none; font-weight: 500; color: var(--muted); }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px;
             background: #000; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
img.thumb { width: 180px; height: auto; border-radius: 4px; background: #000; display: block; }
.failed td { background: #fdf1f0; }
table.cases td { vertical-align: middle; }
.muted { color: var(--muted); }
p.muted { font-size: 13px; }
a { color: #1a56a8; }
footer { margin-top: 30px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line);
         padding-top: 8px; }
@media print {
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  tr, figure, .card { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


@dataclass(frozen=True)
class BatchRow:
    """One case of a batch report: its summary, its page and its thumbnail."""

    summary: CaseSummary
    href: str | None
    thumbnail_png: bytes | None


def render_case(summary: CaseSummary, preview_png: bytes | None) -> str:
    """The report page of one case, from its summary (the case JSON) and preview image."""
    name = summary.case
    measures = summary.measures
    body = [
        _header(f"Intracranial hemorrhage: {name}", summary.created),
        _cards(_case_cards(summary)),
        _preview(preview_png, name, _legend(summary)) + _types_section(summary),
        '<div class="grid2"><div>',
        _abc2_section(measures),
        _components_section(measures),
        "</div><div>",
        _slices_section(measures),
        "</div></div>",
        '<div class="grid2"><div>',
        _input_section(summary.input),
        "</div><div>",
        _processing_section(summary),
        "</div></div>",
        _identifiers_section(summary.identifiers),
        _files_section(summary.outputs),
    ]
    return _page(f"ichseg: {name}", body)


def render_batch(rows: Sequence[BatchRow], failures: Sequence[tuple[str, str]]) -> str:
    """The report page of a batch: every case in one table, then the cases that failed."""
    done = len(rows)
    volumes = [row.summary.measures.volume_ml for row in rows]
    with_ich = sum(1 for volume in volumes if volume > 0)
    median = statistics.median(volumes) if volumes else None
    cards = [
        ("Cases segmented", str(done), f"of {done + len(failures)}", ""),
        ("Failed", str(len(failures)), "see the list below" if failures else "none",
         "flag" if failures else ""),
        ("With hemorrhage", str(with_ich), f"of {done} segmented", ""),
        ("Median volume", f"{_ml(median)} mL" if median is not None else "–",
         "segmented cases", ""),
    ]
    body = [
        _header("Intracranial hemorrhage: batch report"),
        _cards(cards),
        "<h2>Cases</h2>",
        _batch_table(rows) if rows else '<p class="muted">No case was segmented.</p>',
    ]
    if failures:
        body += ["<h2>Failed cases</h2>",
                 _table(["Case", "Problem"],
                        [[escape(name), escape(message)] for name, message in failures],
                        attributes=[' class="failed"'] * len(failures))]
    return _page("ichseg: batch report", body)


def _page(title: str, body: Iterable[str]) -> str:
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        *body,
        f"<footer>Produced by ichseg {escape(__version__)}, open software for intracranial "
        "hemorrhage segmentation; not a medical device.</footer>",
        "</main></body></html>",
    ])


def _header(title: str, created: str | None = None) -> str:
    created = (created or datetime.datetime.now().isoformat(timespec="seconds")).replace("T", " ")
    return (f"<header><h1>{escape(title)}</h1>"
            f'<p class="sub">ichseg {escape(__version__)} · {escape(created)} · '
            f"automatic segmentation of non-contrast head CT</p>"
            f'<p class="warning">{escape(DISCLAIMER)}</p></header>')


def _cards(cards: Iterable[tuple[str, str, str, str]]) -> str:
    items = "".join(
        f'<div class="card {escape(kind)}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div><div class="note">{escape(note)}</div></div>'
        for label, value, note, kind in cards)
    return f'<section class="cards">{items}</section>'


def _case_cards(summary: CaseSummary) -> list[tuple[str, str, str, str]]:
    measures = summary.measures
    abc, parts, slices = measures.abc2, measures.components, measures.slices
    cards = [
        ("Hematoma volume", f"{_ml(measures.volume_ml)} mL",
         f"segmented, {measures.voxel_count:,} voxels", "primary"),
        ("ABC/2 estimate", f"{_ml(abc.volume_ml)} mL",
         f"{_signed_ml(abc.difference_ml)} mL vs segmented"
         + (" (largest hematoma)" if parts.count > 1 else ""), ""),
        ("Components", str(parts.count),
         f"largest {_ml(parts.largest_ml)} mL" if parts.count else "no hemorrhage", ""),
        ("Slices with hemorrhage", f"{slices.count} / {slices.total}",
         _ranges(slices.involved) if slices.involved else "none", ""),
    ]
    uncertainty = summary.uncertainty
    if uncertainty is not None and not uncertainty.is_ensemble:
        cards.append(("Ensemble", "single model", "no uncertainty measure", ""))
    elif uncertainty is not None:
        hr = uncertainty.hr
        cards.append(("Ensemble uncertainty", f"HR {hr:.3f}" if hr is not None else "HR –",
                      str(uncertainty.rule or ""), ""))
    reference = summary.reference
    if reference is not None:
        cards.append(("Reference Dice", f"{reference.dice:.3f}", f"reference {_ml(reference.volume_ml)} mL", ""))
    return cards


def _preview(png: bytes | None, name: str, legend: str = "") -> str:
    if png is None:
        return ""
    alt = escape(f"Axial slices of {name} with the segmentation")
    contours = f"contours by type: {legend}" if legend else "red contour: segmentation"
    return ("<h2>Preview</h2><figure>"
            f'<img src="{_data_uri(png)}" alt="{alt}">'
            f"<figcaption>Axial slices with hemorrhage, brain window (W80/L40); {contours}."
            "</figcaption></figure>")


def _legend(summary: CaseSummary) -> str:
    """The types of a typed case, each after a mark of its preview colour (markup); "" for one class."""
    subtypes = summary.measures.subtypes
    if subtypes is None:
        return ""
    return ", ".join(f"{_swatch(name, summary)} {escape(_type_name(name))}" for name in subtypes.classes)


def _swatch(name: str, summary: CaseSummary) -> str:
    color = class_color(name, summary.labels.names[1:])
    return (f'<span style="display:inline-block;width:0.9em;height:0.9em;border-radius:2px;'
            f'vertical-align:-0.1em;background:{escape(color)}"></span>')


def _type_name(name: str) -> str:
    return f"{name} ({SUBTYPE_NAMES[name]})" if name in SUBTYPE_NAMES else name


def _types_section(summary: CaseSummary) -> str:
    """Each type's volume, components and slices; ABC/2 of the largest IPH; the ICH score's items."""
    subtypes = summary.measures.subtypes
    if subtypes is None:
        return ""
    rows = [[_swatch(name, summary) + " " + escape(_type_name(name)), _ml(item.volume_ml),
             str(item.components.count), escape(_ranges(item.slices.involved) or "–")]
            for name, item in subtypes.classes.items()]
    return ("<h2>Hemorrhage by type</h2>"
            + _table(["Type", "Volume (mL)", "Components", "Slices (z)"], rows, numeric=(1, 2))
            + '<div class="grid2"><div>' + _iph_abc2_section(subtypes.iph_abc2) + "</div><div>"
            + _ich_score_section(subtypes) + "</div></div>")


def _iph_abc2_section(abc: HematomaABC2 | None) -> str:
    if abc is None:
        return ""
    if abc.slice_index is None:
        return "<h2>ABC/2 of the intraparenchymal hematoma</h2><p class='muted'>No intraparenchymal hemorrhage.</p>"
    return ("<h2>ABC/2 of the intraparenchymal hematoma</h2>" + _key_values([
        ("A × B × C / 2", f"{abc.a_mm:.1f} × {abc.b_mm:.1f} × {abc.c_mm:.1f} mm / 2"),
        ("Slice used for A and B", f"z {abc.slice_index}"),
        ("ABC/2", f"{_ml(abc.volume_ml)} mL"),
        ("Segmented volume of that hematoma", f"{_ml(abc.segmented_ml)} mL"),
        ("ABC/2 − segmented", f"{_signed_ml(abc.difference_ml)} mL")])
        + '<p class="muted">Measured on the largest connected intraparenchymal (IPH) component, '
          "IPH voxels only; C weighted as Kothari's.</p>")


def _ich_score_section(subtypes: SubtypeMeasures) -> str:
    score = subtypes.ich_score_imaging
    if score is None:
        return ""
    return ("<h2>ICH score: imaging items</h2>" + _key_values([
        (f"Intraparenchymal volume ≥ {ICH_SCORE_VOLUME_ML:g} mL",
         f"{'yes' if score.iph_volume_at_least_30_ml else 'no'} ({_ml(score.iph_volume_ml)} mL segmented)"),
        ("Intraventricular blood", "yes" if score.intraventricular_blood else "no")])
        + '<p class="muted">The items a segmentation shows, not a score: the ICH score also needs the '
          f"{escape(', '.join(score.NOT_ASSESSED[:-1]))} and {escape(score.NOT_ASSESSED[-1])}.</p>")


def _abc2_section(measures: CaseMeasures) -> str:
    abc = measures.abc2
    if abc.slice_index is None:
        return "<h2>ABC/2 (Kothari)</h2><p class='muted'>No hemorrhage: nothing to measure.</p>"
    several = measures.components.count > 1
    rows = [
        ("A: longest diameter", f"{abc.a_mm:.1f} mm"),
        ("B: longest diameter perpendicular to A", f"{abc.b_mm:.1f} mm"),
        ("C: weighted slices × slice spacing", f"{abc.c_mm:.1f} mm "
         f"({sum(abc.slice_weights):g} × {measures.spacing_mm[0]:.2f} mm)"),
        ("Slice used for A and B", f"z {abc.slice_index}"),
        ("ABC/2", f"{_ml(abc.volume_ml)} mL"),
        ("Segmented volume" + (" of that hematoma" if several else ""), f"{_ml(abc.segmented_ml)} mL"),
        ("ABC/2 − segmented", f"{_signed_ml(abc.difference_ml)} mL"),
    ]
    scope = (" Measured on the largest hematoma (component 1 below), as a reader measures one "
             "hematoma." if several else "")
    return ("<h2>ABC/2 (Kothari)</h2>" + _key_values(rows) +
            '<p class="muted">C counts a slice as 1 where its area is at least 75 % of the '
            f"largest slice's, 0.5 from 25 %, 0 below.{escape(scope)}</p>")


def _components_section(measures: CaseMeasures) -> str:
    parts = measures.components
    if not parts.count:
        return ""
    shown = parts.volumes_ml[:10]
    rows = [[str(i), _ml(v)] for i, v in enumerate(shown, start=1)]
    more = parts.count - len(shown)
    note = f'<p class="muted">and {more} smaller ones</p>' if more > 0 else ""
    return (f"<h2>Connected components ({parts.connectivity}-connectivity)</h2>"
            + _table(["#", "Volume (mL)"], rows, numeric=(0, 1)) + note)


def _slices_section(measures: CaseMeasures) -> str:
    slices, abc = measures.slices, measures.abc2
    if not slices.involved:
        return ""
    rows = [[str(k), f"{area:.0f}", f"{abc.slice_weights[k]:g}"]
            for k, area in zip(slices.involved, slices.areas_mm2, strict=True)]
    weight = ("ABC/2 weight (largest hematoma)" if measures.components.count > 1
              else "ABC/2 weight")
    return ("<h2>Slices with hemorrhage</h2>"
            + _table(["Slice (z)", "Area (mm²)", weight], rows, numeric=(0, 1, 2)))


def _input_section(description: Mapping[str, Any]) -> str:
    rows = [("Input", str(description.get("name", ""))),
            ("Format", str(description.get("format", "")))]
    if "shape" in description:
        rows.append(("Size (z × y × x)", " × ".join(str(n) for n in description["shape"])))
    if "spacing_mm" in description:
        rows.append(("Spacing (z, y, x)",
                     ", ".join(f"{s:.3g}" for s in description["spacing_mm"]) + " mm"))
    if "orientation" in description:
        rows.append(("Orientation", str(description["orientation"])))
    rows += [(_label(key), _text(value)) for key, value in (description.get("dicom") or {}).items()]
    return "<h2>Input</h2>" + _key_values(rows)


def _processing_section(summary: CaseSummary) -> str:
    parts = []
    if summary.uncertainty is not None:
        parts.append("<h2>Ensemble</h2>" + _key_values(
            [(_label(key), _text(value)) for key, value in summary.uncertainty.to_json().items()]))
    if summary.postprocessing:
        parts.append("<h2>Postprocessing</h2>" + _key_values(
            [(_label(key), _text(value)) for key, value in summary.postprocessing.items()]))
    reference = summary.reference
    if reference is not None:
        parts.append("<h2>Reference segmentation</h2>" + _key_values([
            ("Dice", f"{reference.dice:.3f}"),
            ("Reference volume", f"{_ml(reference.volume_ml)} mL"),
            ("Segmented − reference", f"{_signed_ml(reference.difference_ml)} mL")]))
    return "".join(parts)


def _identifiers_section(identifiers: Mapping[str, Any] | None) -> str:
    if not identifiers:
        return ""
    return ("<h2>Patient and study</h2>"
            + _key_values([(_label(k), _text(v)) for k, v in identifiers.items()]))


def _files_section(outputs: Mapping[str, str]) -> str:
    """The case's other files, linked relative to the page (they sit beside it)."""
    if not outputs:
        return ""
    rows = "".join(f'<tr><th>{escape(_label(kind))}</th><td><a href="{escape(name)}">'
                   f"{escape(name)}</a></td></tr>" for kind, name in outputs.items())
    return f'<h2>Files</h2><table class="kv"><tbody>{rows}</tbody></table>'


#: Readable names for keys of the case JSON and DICOM keywords shown in reports.
_LABELS = {
    "SeriesDescription": "Series description", "SeriesNumber": "Series number",
    "BodyPartExamined": "Body part", "ManufacturerModelName": "Scanner model",
    "SliceThickness": "Slice thickness (mm)", "KVP": "Tube voltage (kVp)",
    "ConvolutionKernel": "Reconstruction kernel", "StudyInstanceUID": "Study Instance UID",
    "SeriesInstanceUID": "Series Instance UID", "FrameOfReferenceUID": "Frame of Reference UID",
    "OtherPatientIDs": "Other patient IDs",
    "n_models": "Models", "hr": "Half ratio (HR)", "rule": "Rule applied",
    "params": "Parameters", "mask": "Mask (NIfTI)", "votes": "Vote map (NIfTI)",
    "json": "Measures (JSON)", "preview": "Preview (PNG)", "html": "This report",
    "dicom_seg": "Segmentation (DICOM-SEG)",
}


def _label(key: str) -> str:
    """A readable label: the table above, else CamelCase or snake_case split into words."""
    if key in _LABELS:
        return _LABELS[key]
    words = re.findall(r"[A-Z]{2,}(?![a-z])|[A-Z]?[a-z]+|[0-9]+", key)
    text = " ".join(word if word.isupper() else word.lower() for word in words) or key
    return text[:1].upper() + text[1:]


def _batch_table(rows: Sequence[BatchRow]) -> str:
    has_hr = any(row.summary.uncertainty is not None and row.summary.uncertainty.hr is not None for row in rows)
    has_reference = any(row.summary.reference is not None for row in rows)
    header = ["Preview", "Case", "Volume (mL)", "ABC/2 (mL)", "Components", "Largest (mL)",
              "Slices (z)"]
    has_types = any(row.summary.measures.subtypes is not None for row in rows)
    header += ["HR"] * has_hr + ["Dice"] * has_reference + ["By type (mL)"] * has_types
    lines, ids = [], []
    for row in rows:
        summary = row.summary
        measures = summary.measures
        name = escape(summary.case)
        link = f'<a href="{escape(row.href)}">{name}</a>' if row.href else name
        image = (f'<img class="thumb" src="{_data_uri(row.thumbnail_png)}" alt="{name}">'
                 if row.thumbnail_png else "")
        cells = [image, link, _ml(measures.volume_ml), _ml(measures.abc2.volume_ml),
                 str(measures.components.count), _ml(measures.components.largest_ml),
                 _ranges(measures.slices.involved) or "–"]
        if has_hr:
            hr = summary.uncertainty.hr if summary.uncertainty is not None else None
            cells.append(f"{hr:.3f}" if hr is not None else "–")
        if has_reference:
            cells.append(f"{summary.reference.dice:.3f}" if summary.reference is not None else "–")
        if has_types:
            cells.append(_types_cell(summary))
        lines.append(cells)
        ids.append(f' id="case-{name}"')
    return _table(header, lines, numeric=tuple(range(2, len(header) - has_types)), attributes=ids,
                  css_class="cases")


def _types_cell(summary: CaseSummary) -> str:
    """The types present in a typed case with their volumes (markup), "–" for one class or none."""
    subtypes = summary.measures.subtypes
    present = [f"{_swatch(name, summary)} {escape(name)} {_ml(item.volume_ml)}"
               for name, item in (subtypes.classes.items() if subtypes is not None else ()) if item.voxel_count]
    return "<br>".join(present) or "–"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = (),
           attributes: Sequence[str] | None = None, css_class: str = "") -> str:
    """A table of cells that are already escaped; ``attributes`` go into each row's tag."""
    head = "".join(f'<th class="num">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>"
                   for i, h in enumerate(header))
    body = "".join(
        f"<tr{attributes[n] if attributes else ''}>" + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)) + "</tr>"
        for n, row in enumerate(rows))
    opening = f'<table class="{css_class}">' if css_class else "<table>"
    return f"{opening}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _key_values(rows: Iterable[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{escape(key)}</th><td>{escape(value)}</td></tr>"
                   for key, value in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _text(value: Any) -> str:
    """A JSON value as short text: lists joined, mappings as key=value, floats rounded."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "–"
    return str(value)


def _ml(value: float) -> str:
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def _signed_ml(value: float) -> str:
    return ("+" if value >= 0 else "−") + _ml(abs(value))


def _ranges(indices: Sequence[int]) -> str:
    """Slice indices as compact ranges: 3–7, 10, 12–13."""
    spans: list[list[int]] = []
    for k in indices:
        if spans and k == spans[-1][1] + 1:
            spans[-1][1] = k
        else:
            spans.append([k, k])
    return ", ".join(f"{a}–{b}" if b > a else str(a) for a, b in spans)
