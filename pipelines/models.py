"""Build the SQL models of ``sql/`` in DuckDB: staging models read the raw lake, marts read staging and each other.

One model per ``.sql`` file, named after the file stem (``sql/marts/window_stats.sql`` builds the table
``window_stats``); the file holds a single ``select``. A model's dependencies are the other models and seeds
(``sql/seeds/*.csv``, loaded as tables of the same name) whose names appear in its SQL.

Inputs reach the SQL as DuckDB variables and temporary views, never by formatting values into SQL text:

- ``getvariable('as_of')``: the end of every time window, a naive UTC timestamp on a whole minute;
- ``getvariable('lake_<dataset>')``: the glob of a raw dataset, e.g. ``lake_metric_points``;
- ``raw_<dataset>``: a temporary view over that glob with the Hive partition columns ``region`` and ``date``
  added back, or an empty view with the same columns while the dataset has no file yet.

Every table and column gets the description written for it in ``docs/data-dictionary.md`` as a DuckDB comment, so
``duckdb_columns()`` and ``describe`` show the same text the documentation does. The SQL files and the data
dictionary are located relative to this package, which therefore has to be installed editable (``pip install
-e .``), as the Makefile does.
"""

from __future__ import annotations

import graphlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.lake import (
    DATASETS,
    SCHEMAS,
    Partition,
    dataset_glob,
    earlier_layout_files,
    has_data,
    partitions,
    widen_sql,
)

REPOSITORY = Path(__file__).resolve().parents[1]
SQL_DIR = REPOSITORY / "sql"
DATA_DICTIONARY = REPOSITORY / "docs" / "data-dictionary.md"

LAYERS: tuple[str, ...] = ("staging", "marts")

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMENT_OR_STRING = re.compile(r"--[^\n]*|'(?:[^']|'')*'")


class ModelError(RuntimeError):
    """A model cannot be found, ordered or built; the message names the model and what to do."""


# Models kept as a view over the lake in the build's own connection instead of a table in the warehouse file:
# stg_metric_points only renames and types the lake's rows, and copying its millions of rows into DuckDB cost
# as much as all the marts that read it. The marts hold what it holds (usage_minute the 1-minute rows,
# usage_bucket the coarser ones). Such a model may read only the raw_* views, since it is made again in each
# connection that builds a model reading it.
READ_THROUGH: frozenset[str] = frozenset({"stg_metric_points"})


@dataclass(frozen=True)
class SqlModel:
    """One SQL model: a ``select`` in ``sql/<layer>/<name>.sql`` materialised as the table ``<name>`` (a view in
    the build connection for ``READ_THROUGH`` models)."""

    name: str
    layer: str
    path: Path
    sql: str
    depends_on: tuple[str, ...]

    @property
    def description(self) -> str:
        """The comment the SQL file opens with (purpose and grain), as plain text with paragraphs kept."""
        lines: list[str] = []
        for line in self.sql.splitlines():
            stripped = line.strip()
            if not stripped.startswith("--"):
                break
            lines.append(stripped.removeprefix("--").strip())
        paragraphs = " ".join(line or "\n\n" for line in lines)
        return "\n\n".join(" ".join(part.split()) for part in paragraphs.split("\n\n") if part.strip())


@dataclass(frozen=True)
class ColumnDoc:
    """One documented column: its name, the DuckDB type written in the dictionary, and its description."""

    name: str
    type: str
    description: str


@dataclass(frozen=True)
class TableDoc:
    """One documented table: the paragraph under its heading and its columns, in documentation order."""

    name: str
    description: str
    columns: tuple[ColumnDoc, ...]


def seed_names(sql_dir: Path | None = None) -> list[str]:
    """The seed tables: one per ``sql/seeds/*.csv``, named after the file stem."""
    root = sql_dir or SQL_DIR
    return sorted(path.stem for path in (root / "seeds").glob("*.csv"))


def discover_models(sql_dir: Path | None = None) -> list[SqlModel]:
    """Every model under ``sql/staging`` and ``sql/marts`` with its dependencies, sorted by layer and name."""
    root = sql_dir or SQL_DIR
    paths = [(layer, path) for layer in LAYERS for path in sorted((root / layer).glob("*.sql"))]
    names = [path.stem for _, path in paths]
    for name, (_, path) in zip(names, paths, strict=True):
        if not _NAME.match(name):
            raise ModelError(f"{path}: a model file name must be a lowercase SQL identifier such as usage_minute")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ModelError(f"models defined twice under {root}: {', '.join(duplicates)}; rename one of the files")
    known = set(names) | set(seed_names(root))
    models = []
    for layer, path in paths:
        sql = path.read_text(encoding="utf-8").strip().removesuffix(";").rstrip()
        referenced = {word.lower() for word in _WORD.findall(_COMMENT_OR_STRING.sub(" ", sql))}
        depends_on = tuple(sorted((referenced & known) - {path.stem}))
        models.append(SqlModel(path.stem, layer, path, sql, depends_on))
    return models


def load_seeds(connection: duckdb.DuckDBPyConnection, sql_dir: Path | None = None) -> None:
    """Load every ``sql/seeds/*.csv`` into a table of the same name, replacing what was there."""
    root = sql_dir or SQL_DIR
    documentation = table_docs()
    for name in seed_names(root):
        path = root / "seeds" / f"{name}.csv"
        doc = documentation.get(name)
        # Read as text and cast to the documented types, so a seed's types do not depend on its current values
        # (an output_multiplier of 5 would otherwise be read as an integer, 1.25 as a double).
        casts = ", ".join(
            f"cast({_identifier(column.name)} as {_checked_type(column.type)}) as {_identifier(column.name)}"
            for column in (doc.columns if doc else ())
        )
        projection = f"* replace ({casts})" if casts else "*"
        connection.execute(
            f"create or replace table {_identifier(name)} as "
            f"select {projection} from read_csv(?, header = true, all_varchar = true)",
            [str(path)],
        )
        apply_comments(connection, name, doc)


def build_model(connection: duckdb.DuckDBPyConnection, model: SqlModel, *, lake: Path, as_of: datetime) -> int:
    """Create or replace the model's table from its SQL and return its row count.

    The raw views and variables are bound first, seeds the model reads are loaded if missing, and the table and
    its columns get their descriptions from the data dictionary. The table and its comments are replaced in one
    transaction: a failing model leaves the previous table in place.
    """
    bind_inputs(connection, lake=lake, as_of=as_of)
    root = model.path.parents[1]
    for name in (*(set(model.depends_on) & READ_THROUGH), *({model.name} & READ_THROUGH)):
        _create_read_through(connection, name, root)
    if model.name in READ_THROUGH:
        ((count,),) = connection.execute(f"select count(*) from {_identifier(model.name)}").fetchall()
        return int(count)
    missing_seeds = [
        name for name in model.depends_on if name in seed_names(root) and not table_exists(connection, name)
    ]
    if missing_seeds:
        load_seeds(connection, root)
    table = _identifier(model.name)
    documentation = table_docs().get(model.name)
    connection.execute("begin transaction")
    try:
        connection.execute(f"create or replace table {table} as\n{model.sql}")
        apply_comments(connection, model.name, documentation)
        row = connection.execute(f"select count(*) from {table}").fetchone()
        connection.execute("commit")
    except BaseException as error:
        connection.execute("rollback")
        if isinstance(error, duckdb.Error):
            raise ModelError(f"model {model.name} ({model.path}) failed: {error}") from error
        raise
    return int(row[0]) if row else 0


def _create_read_through(connection: duckdb.DuckDBPyConnection, name: str, root: Path) -> None:
    """(Re)create a ``READ_THROUGH`` model as a temporary view over the raw views, with its documentation, and
    drop a table of that name a warehouse file from an earlier version may still hold."""
    sql = (root / "staging" / f"{name}.sql").read_text(encoding="utf-8").strip().removesuffix(";").rstrip()
    stale = connection.execute(
        "select database_name, schema_name from duckdb_tables() where table_name = ? and not temporary", [name]
    ).fetchall()
    for database, schema in stale:
        connection.execute(f"drop table {_identifier(database)}.{_identifier(schema)}.{_identifier(name)}")
    connection.execute(f"create or replace temp view {_identifier(name)} as\n{sql}")
    apply_comments(connection, name, table_docs().get(name), kind="view")


def _build_quota_map(connection: duckdb.DuckDBPyConnection, *, lake: Path, as_of: datetime) -> int:
    # Imported late: the quota mapper is only needed when quota_map is built.
    from pipelines.quotas.warehouse import build_quota_map

    return build_quota_map(connection, as_of=as_of, lake=lake)


# Models written in Python rather than SQL, built in the same graph and order: name -> (tables it reads, builder).
# quota_map parses quota names (pipelines/quotas/), which SQL cannot do well.
PYTHON_MODELS: dict[str, tuple[tuple[str, ...], Callable[..., int]]] = {
    "quota_map": (
        ("stg_service_quotas_history", "stg_foundation_models", "stg_inference_profiles", "stg_metric_points"),
        _build_quota_map,
    ),
}


def all_models(sql_dir: Path | None = None) -> list[SqlModel]:
    """The SQL models and the Python models, each SQL model also depending on the Python models it reads."""
    linked = []
    for model in discover_models(sql_dir):
        reads = {name for name in PYTHON_MODELS if re.search(rf"\b{name}\b", model.sql)}
        linked.append(
            SqlModel(model.name, model.layer, model.path, model.sql, tuple(sorted({*model.depends_on, *reads})))
        )
    if sql_dir is None or Path(sql_dir) == SQL_DIR:
        # The Python models read the project's own staging models; another sql/ tree (tests) has none of them.
        for name, (reads, builder) in PYTHON_MODELS.items():
            linked.append(SqlModel(name, LAYERS[-1], Path(builder.__code__.co_filename), "", reads))
    return linked


def build_any(connection: duckdb.DuckDBPyConnection, model: SqlModel, *, lake: Path, as_of: datetime) -> int:
    """Build one model of ``all_models``, SQL or Python; return its row count."""
    if model.name in PYTHON_MODELS:
        bind_inputs(connection, lake=lake, as_of=as_of)
        return PYTHON_MODELS[model.name][1](connection, lake=lake, as_of=as_of)
    return build_model(connection, model, lake=lake, as_of=as_of)


def build_all(
    connection: duckdb.DuckDBPyConnection,
    *,
    lake: Path,
    as_of: datetime,
    select: Iterable[str] | None = None,
    sql_dir: Path | None = None,
) -> dict[str, int]:
    """Load the seeds and build the models (SQL and Python) in dependency order; return each one's row count.

    ``select`` restricts the run to the named models (still in dependency order); their upstream tables must
    already exist.
    """
    models = {model.name: model for model in all_models(sql_dir)}
    wanted = set(models) if select is None else set(select)
    unknown = sorted(wanted - set(models))
    if unknown:
        raise ModelError(f"unknown model(s) {', '.join(unknown)}; known models: {', '.join(sorted(models))}")
    load_seeds(connection, sql_dir)
    counts: dict[str, int] = {}
    for name in build_order(models.values()):
        if name in wanted:
            counts[name] = build_any(connection, models[name], lake=lake, as_of=as_of)
    return counts


def build_order(models: Iterable[SqlModel]) -> list[str]:
    """Model names in an order where every model comes after the models it reads (seeds are not listed)."""
    by_name = {model.name: model for model in models}
    sorter = graphlib.TopologicalSorter(
        {name: [dep for dep in model.depends_on if dep in by_name] for name, model in by_name.items()}
    )
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        raise ModelError(f"the models read each other in a cycle: {' -> '.join(error.args[1])}") from error
    order: list[str] = []
    while sorter.is_active():
        # Sorting each ready set makes the order reproducible: staging before marts, then by name.
        ready = sorted(sorter.get_ready(), key=lambda name: (LAYERS.index(by_name[name].layer), name))
        order.extend(ready)
        sorter.done(*ready)
    return order


def bind_inputs(connection: duckdb.DuckDBPyConnection, *, lake: Path, as_of: datetime) -> None:
    """Set ``as_of`` and the ``lake_<dataset>`` globs as DuckDB variables and (re)create the ``raw_*`` views."""
    connection.execute("set variable as_of = ?", [whole_minute(as_of)])
    # Tables have no row order to keep (every reader orders what it needs), and keeping it costs DuckDB a
    # serialising step on each 40-million-row scan.
    connection.execute("set preserve_insertion_order = false")
    for dataset in DATASETS:
        variable = f"lake_{dataset}"
        connection.execute(f"set variable {variable} = ?", [dataset_glob(lake, dataset)])
        view = _identifier(f"raw_{dataset}")
        earlier = earlier_layout_files(lake) if dataset == "metric_points" and has_data(lake, dataset) else []
        if earlier:
            _bind_mixed_points(connection, lake, earlier)
        elif has_data(lake, dataset):
            connection.execute(
                f"create or replace temp view {view} as select * from read_parquet("
                f"getvariable('{variable}'), hive_partitioning = true, "
                "hive_types = {'region': varchar, 'date': date}, union_by_name = true)"
            )
        else:
            # read_parquet fails on a glob that matches nothing; an empty view with the same columns lets every
            # model build (empty) before the first extract.
            columns = ", ".join(
                f"cast(null as {_duckdb_type(field.type)}) as {_identifier(field.name)}" for field in SCHEMAS[dataset]
            )
            connection.execute(
                f"create or replace temp view {view} as "
                f"select {columns}, cast(null as varchar) as region, cast(null as date) as date where false"
            )


def _bind_mixed_points(connection: duckdb.DuckDBPyConnection, lake: Path, earlier: list[Partition]) -> None:
    """raw_metric_points over a lake that still holds files of the one-row-per-datapoint layout (until the next
    extraction rewrites them): those files go through the extraction's own pivot, the others are read as they
    are."""
    old_files = [str(partition.path(lake)) for partition in earlier]
    current = [str(p.path(lake)) for p in partitions(lake, "metric_points") if str(p.path(lake)) not in old_files]
    connection.execute("set variable lake_metric_points_earlier = ?", [old_files])
    options = "hive_partitioning = true, hive_types = {'region': varchar, 'date': date}"
    pivoted = widen_sql(f"read_parquet(getvariable('lake_metric_points_earlier'), {options})", ("region", '"date"'))
    parts = [f"select * from ({pivoted})"]
    if current:
        connection.execute("set variable lake_metric_points_current = ?", [current])
        parts.insert(0, f"select * from read_parquet(getvariable('lake_metric_points_current'), {options})")
    connection.execute(f"create or replace temp view raw_metric_points as {' union all by name '.join(parts)}")


def whole_minute(as_of: datetime) -> datetime:
    """``as_of`` as a naive UTC datetime; it must fall on a whole minute (windows are made of whole minutes)."""
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(UTC).replace(tzinfo=None)
    if as_of.second or as_of.microsecond:
        raise ValueError(f"as_of {as_of.isoformat()} is not on a whole minute; use e.g. {as_of:%Y-%m-%dT%H:%M}:00")
    return as_of


def data_dictionary(path: Path | None = None) -> dict[str, TableDoc]:
    """The tables documented in ``docs/data-dictionary.md``.

    A table is a ``## <name>`` heading (the name may be in backticks), the paragraph under it, and a Markdown table
    whose header row is ``| column | type | description |``. Other headings and tables are ignored.
    """
    text = (path or DATA_DICTIONARY).read_text(encoding="utf-8")
    tables: dict[str, TableDoc] = {}
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        heading, _, body = section.partition("\n")
        name = heading.strip().strip("`").strip()
        if not _NAME.match(name):
            continue
        description_lines: list[str] = []
        description_done = False
        columns: list[ColumnDoc] = []
        in_table = False
        for line in body.splitlines():
            stripped = line.strip()
            if stripped.startswith("### "):
                break
            if stripped.startswith("|"):
                cells = [cell.strip() for cell in stripped.strip("|").split("|")]
                if [cell.lower() for cell in cells[:3]] == ["column", "type", "description"]:
                    in_table = True
                elif in_table and len(cells) >= 3 and not set(cells[0]) <= set("-: "):
                    columns.append(ColumnDoc(_plain(cells[0]), _plain(cells[1]).lower(), _plain(" | ".join(cells[2:]))))
            elif in_table and not stripped:
                in_table = False
            elif not columns and not in_table and (stripped or description_lines):
                # The table's description is the first paragraph under the heading.
                if not stripped:
                    description_done = True
                elif not description_done:
                    description_lines.append(stripped)
        tables[name] = TableDoc(name, _plain(" ".join(description_lines)), tuple(columns))
    return tables


LAKE_SECTION = "Lake datasets"


def lake_docs(path: Path | None = None) -> dict[str, TableDoc]:
    """The raw lake datasets documented in ``docs/data-dictionary.md``: a ``### <dataset>`` heading with a
    ``| column | type | description |`` table under the ``## Lake datasets`` section, partition columns included."""
    text = (path or DATA_DICTIONARY).read_text(encoding="utf-8")
    datasets: dict[str, TableDoc] = {}
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        heading, _, body = section.partition("\n")
        if heading.strip() != LAKE_SECTION:
            continue
        for subsection in re.split(r"^### ", body, flags=re.MULTILINE)[1:]:
            name, _, rows = subsection.partition("\n")
            name = name.strip().strip("`").strip()
            columns = []
            for line in rows.splitlines():
                cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
                if not line.strip().startswith("|") or len(cells) < 3 or set(cells[0]) <= set("-: "):
                    continue
                if [cell.lower() for cell in cells[:3]] != ["column", "type", "description"]:
                    columns.append(ColumnDoc(_plain(cells[0]), _plain(cells[1]).lower(), _plain(" | ".join(cells[2:]))))
            datasets[name] = TableDoc(name, "", tuple(columns))
    return datasets


def _plain(text: str) -> str:
    """Markdown cell text as plain text: code spans and emphasis markers removed, whitespace collapsed."""
    text = text.replace("\\|", "|").replace("`", "").replace("**", "")
    return " ".join(text.split())


def table_docs() -> dict[str, TableDoc]:
    """The data dictionary's tables, or none when the docs are not beside the code."""
    return data_dictionary() if DATA_DICTIONARY.exists() else {}


def apply_comments(
    connection: duckdb.DuckDBPyConnection, table: str, doc: TableDoc | None, *, kind: str = "table"
) -> None:
    """Copy the data dictionary's descriptions onto the table (or view) and its columns."""
    if doc is None:
        return
    present = {
        name
        for (name,) in connection.execute(
            "select column_name from duckdb_columns() where table_name = ? and schema_name = current_schema()",
            [table],
        ).fetchall()
    }
    # COMMENT ON takes a string literal only (no parameter, no expression), so the dictionary's own text is
    # written as an escaped literal.
    connection.execute(
        f"comment on {'view' if kind == 'view' else 'table'} {_identifier(table)} is {_literal(doc.description)}"
    )
    for column in doc.columns:
        if column.name in present:
            connection.execute(
                f"comment on column {_identifier(table)}.{_identifier(column.name)} is {_literal(column.description)}"
            )


def table_exists(connection: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the warehouse's current schema holds a table of that name."""
    # fetchall, not fetchone: a result left half-read blocks registering an Arrow table on the connection.
    ((count,),) = connection.execute(
        "select count(*) from duckdb_tables() where table_name = ? and schema_name = current_schema()", [name]
    ).fetchall()
    return bool(count)


def _checked_type(type_name: str) -> str:
    """A documented type, checked to be a plain DuckDB type name before it is written into a cast."""
    if not re.fullmatch(r"[a-z]+(\[\])?", type_name):
        raise ModelError(f"{DATA_DICTIONARY}: {type_name!r} is not a DuckDB type name such as double or varchar[]")
    return type_name


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _duckdb_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type DuckDB itself reads a Parquet column of this Arrow type as."""
    if pa.types.is_list(arrow_type):
        return _duckdb_type(arrow_type.value_type) + "[]"
    simple = {
        pa.string(): "varchar",
        pa.int32(): "integer",
        pa.int64(): "bigint",
        pa.float64(): "double",
        pa.bool_(): "boolean",
        pa.timestamp("us"): "timestamp",
        pa.date32(): "date",
    }
    if arrow_type not in simple:
        raise ModelError(f"no DuckDB type for the lake column type {arrow_type}; add it to _duckdb_type")
    return simple[arrow_type]
