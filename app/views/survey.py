"""Survey: explore a table written by ``rankscope survey`` (thousands of checkpoints, millions of rows).

Every chart is an aggregate computed by DuckDB over the Parquet file (``app.survey.query``, cached in
``app.data``): quartiles per group, a block × module-type map, a capped random sample for the scatter,
one page of the checkpoint list. The table itself never goes to the browser.
"""

from pathlib import Path

import streamlit as st

from app import data
from app.errors import UserError
from app.library import add_source, session_dir
from app.survey import query
from app.survey.figures import GROUP_LABELS, MEASURE_LABELS, distribution_figure, grid_figure, scatter_figure
from app.ui import USER_ERRORS, error_text, guard, md

st.title("Survey many checkpoints")
st.caption("Open a table written by `rankscope survey PATH... -o OUT.parquet`: one row per (checkpoint, layer). "
           "Charts are computed on the server from the file, so tables of millions of rows stay quick.")


def _open_path() -> None:
    p = Path(st.session_state.get("_survey_path_input", "").strip()).expanduser()
    if str(p) in ("", "."):
        return
    if not p.is_file():
        st.session_state["_survey_msg"] = f"{p}: no such survey table"
        return
    st.session_state["survey_table"] = str(p.resolve())


def _save_upload(f) -> None:
    from adapters.formats.atomic import atomic_write_bytes

    name = Path(f.name).name.replace("/", "_") or "survey.parquet"
    target = session_dir() / "surveys" / name
    atomic_write_bytes(target, f.getvalue())
    st.session_state["survey_table"] = str(target)
    st.session_state["_survey_upload_done"] = f.file_id


left, right = st.columns([3, 2])
left.text_input("Survey table (a local .parquet path)", key="_survey_path_input", on_change=_open_path,
                placeholder="/path/to/survey.parquet")
left.button("Open", on_click=_open_path)
up = right.file_uploader("…or upload one", type=["parquet"], key="_survey_upload")
if up is not None and st.session_state.get("_survey_upload_done") != up.file_id:
    with guard("upload"):
        _save_upload(up)
if msg := st.session_state.pop("_survey_msg", None):
    st.error(md(msg), icon=":material/error:")
path = st.session_state.get("survey_table")
if not path:
    st.info("No survey table open yet. Write one with `rankscope survey sample_checkpoints -o survey.parquet` "
            "and give its path above.")
    st.stop()


def _inspect(src_path: str) -> None:
    """Add a checkpoint of the survey to the library, make it the first active source, go to Inspect."""
    try:
        if not Path(src_path).exists():
            raise UserError(src_path, "not reachable from this machine")
        src = add_source(src_path, "survey", activate=False)
        st.session_state["active"] = [src.label] + [a for a in st.session_state.get("active", []) if a != src.label]
        st.session_state["_survey_go"] = True
    except USER_ERRORS as e:
        st.session_state["_survey_msg"] = f"Could not open the checkpoint — {error_text(e)}"


with guard(Path(path).name):
    ov = data.survey_query(path, "overview")
    st.caption(md(f"Table: {path}"))
    c = st.columns(4)
    c[0].metric("Checkpoints", f"{ov['checkpoints']:,}")
    c[1].metric("Layers", f"{ov['layers']:,}")
    c[2].metric("Failed checkpoints", f"{ov['failed']:,}")
    c[3].metric("Rows", f"{ov['rows']:,}")

    with st.expander("Filter", expanded=False):
        f1, f2 = st.columns(2)
        methods = f1.multiselect("Methods", ov["methods"])
        formats = f2.multiselect("Formats", ov["formats"])
        modules = f1.multiselect("Module types", ov["module_types"])
        rs = f2.multiselect("Configured r", ov["r_values"])
        search = f1.text_input("Source contains", "")
        failed = f2.toggle("Include failed checkpoints in the list", value=True)
    flt = query.Filters(tuple(methods), tuple(formats), tuple(modules), tuple(int(r) for r in rs), search.strip(), failed)

    m1, m2, m3 = st.columns(3)
    measure = m1.selectbox("Rank measure", query.MEASURES, format_func=lambda m: MEASURE_LABELS[m])
    ratio = m2.toggle("Divide by the configured r", value=True,
                      help="1 means the update uses every direction its rank allows; small values, few of them.")
    by = m3.selectbox("Group by", query.GROUPS, format_func=lambda g: GROUP_LABELS[g])

    st.subheader("Distribution")
    dist = data.survey_query(path, "distribution", flt, measure, by, ratio)
    if dist.empty:
        st.info("No layer passes the filters (or none has a configured r).")
    else:
        st.plotly_chart(distribution_figure(dist, measure, by, ratio), width="stretch")
        st.caption("Boxes: quartiles; whiskers: smallest and largest value; computed over every layer that passes the filters.")

    st.subheader("Model map")
    grid = data.survey_query(path, "model_grid", flt, measure, ratio)
    if grid.empty:
        st.info("These layers have no numbered blocks, so there is no block × module-type map.")
    else:
        st.plotly_chart(grid_figure(grid, measure, ratio), width="stretch")

    st.subheader(f"{MEASURE_LABELS[measure]} against configured r")
    sample, total = data.survey_query(path, "scatter_sample", flt, measure, query.SCATTER_CAP)
    if total:
        st.plotly_chart(scatter_figure(sample, measure, total), width="stretch")
        st.caption(f"At most {query.SCATTER_CAP:,} layers are drawn (a reproducible random sample when there are more); "
                   "the distributions above use every layer.")
    else:
        st.info("No layer with a configured r passes the filters.")

    st.subheader("Checkpoints")
    s1, s2, s3 = st.columns([2, 1, 1])
    sort = s1.selectbox("Sort by", query.CHECKPOINT_SORTS, index=query.CHECKPOINT_SORTS.index("median_effective_rank_over_r"))
    desc = s2.toggle("Descending", value=False)
    page_rows = query.PAGE_ROWS
    first, n_ck = data.survey_query(path, "checkpoints", flt, sort, desc, page_rows, 0)
    pages = max(1, -(-n_ck // page_rows))
    page = int(s3.number_input("Page", min_value=1, max_value=pages, value=1, step=1)) if pages > 1 else 1
    table = first if page == 1 else data.survey_query(path, "checkpoints", flt, sort, desc, page_rows, (page - 1) * page_rows)[0]
    st.caption(f"{n_ck:,} checkpoints pass the filters; page {page} of {pages} ({page_rows} a page).")
    event = st.dataframe(
        table.drop(columns=["path"]), hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
        key="_survey_table", column_config={
            "median_effective_rank": st.column_config.NumberColumn("median eff. rank", format="%.2f"),
            "median_effective_rank_over_r": st.column_config.NumberColumn("median eff. rank / r", format="%.3f"),
            "mean_sparsity": st.column_config.NumberColumn("mean sparsity", format="%.4f"),
            "file_size_bytes": st.column_config.NumberColumn("bytes", format="%d"),
        })
    if len(table):
        rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
        options = list(table["source"])
        chosen = st.selectbox("Checkpoint to inspect (or click a row above)", options,
                              index=rows[0] if rows and rows[0] < len(options) else 0)
        row = table.iloc[options.index(chosen)]
        if isinstance(row["error"], str):
            st.error(md(row["error"]), icon=":material/error:")
        reachable = bool(row["path"]) and Path(str(row["path"])).exists()
        st.button("Inspect this checkpoint", on_click=_inspect, args=(str(row["path"]),), disabled=not reachable,
                  help=None if reachable else "Its path is not reachable from this machine.")
        if not reachable:
            st.caption(md(f"{row['path']} is not reachable from this machine."))

if st.session_state.pop("_survey_go", False):
    st.switch_page("views/inspect.py")
