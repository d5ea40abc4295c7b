"""Check every KQL query the template ships against the tables it declares.

The queries live in three places: the workbook (infra/analytics/workbook.json, including the
queries of its parameters), the alert rules (infra/analytics/alerts/*.kql) and the docs
(docs/usage-analytics.md and docs/delivery.md, fenced ```kusto blocks). Each is bound by Microsoft's
Kusto language service (npm @kusto/language-service-next, run by analyze.cjs under Node) against
a database holding exactly the tables of infra/analytics/tables.json, the Application Insights
tables the alerts read (APP_INSIGHTS_TABLES) and the standard columns Log Analytics adds to every
table; a syntax error, an unknown table, column or function is an error.

The service does not know workbook parameters ({TimeRange}, {Subscription} ...) nor the
placeholders Bicep fills at deploy time, so each one is replaced by typed values first, in
every shape it can take (a relative and an absolute time range, a single value and "All"):
a query must bind in all of them. A reference to a parameter the workbook does not declare is
itself an error.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANALYTICS = ROOT / "infra" / "analytics"
TABLES_JSON = ANALYTICS / "tables.json"
WORKBOOK_JSON = ANALYTICS / "workbook.json"
MODEL_PRICES = ANALYTICS / "model-prices.txt"
ALERTS_DIR = ANALYTICS / "alerts"
DOC = ROOT / "docs" / "usage-analytics.md"
DELIVERY_DOC = ROOT / "docs" / "delivery.md"  # its queries read AppTraces (the counters lines)
ANALYZER = Path(__file__).with_name("analyze.cjs")

# Columns Log Analytics adds to every table, custom ones included.
# https://learn.microsoft.com/azure/azure-monitor/logs/log-standard-columns
STANDARD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("TenantId", "string"),
    ("Type", "string"),
    ("_ResourceId", "string"),
    ("_SubscriptionId", "string"),
    ("_TimeReceived", "dateTime"),
    ("_IsBillable", "string"),
    ("_BilledSize", "real"),
)

# Workspace-based Application Insights tables the alert queries read (the pipeline's own log lines),
# with their documented columns and types, so a misspelled column fails here as in a custom table.
# https://learn.microsoft.com/azure/azure-monitor/reference/tables/apptraces
APP_INSIGHTS_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "AppTraces": (
        ("AppRoleInstance", "string"),
        ("AppRoleName", "string"),
        ("AppVersion", "string"),
        ("ClientBrowser", "string"),
        ("ClientCity", "string"),
        ("ClientCountryOrRegion", "string"),
        ("ClientIP", "string"),
        ("ClientModel", "string"),
        ("ClientOS", "string"),
        ("ClientStateOrProvince", "string"),
        ("ClientType", "string"),
        ("IKey", "string"),
        ("ItemCount", "int"),
        ("Measurements", "dynamic"),
        ("Message", "string"),
        ("OperationId", "string"),
        ("OperationName", "string"),
        ("ParentId", "string"),
        ("Properties", "dynamic"),
        ("ReferencedItemId", "string"),
        ("ReferencedType", "string"),
        ("ResourceGUID", "string"),
        ("SDKVersion", "string"),
        ("SessionId", "string"),
        ("SeverityLevel", "int"),
        ("SourceSystem", "string"),
        ("SyntheticSource", "string"),
        ("TimeGenerated", "dateTime"),
        ("UserAccountId", "string"),
        ("UserAuthenticatedId", "string"),
        ("UserId", "string"),
    ),
}

# The placeholder workbook.bicep replaces with one datatable row per priced model.
PRICE_ROWS_TOKEN = "__MODEL_PRICE_ROWS__"

# Placeholders alerts.bicep fills in the alert queries, with a typed value each.
ALERT_PLACEHOLDERS: dict[str, str] = {"MinCalls": "20"}

# Workbook parameter references: {Name} or {Name:format}.
PARAMETER_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+))?\}")

# Typed stand-ins for a time range parameter, by format. {TimeRange} expands to "> ago(...)" for a
# relative range and to a "between" for a custom one: both must bind.
# https://learn.microsoft.com/azure/azure-monitor/visualize/workbooks-time
_START = "datetime(2026-11-01T00:00:00.000Z)"
_END = "datetime(2026-11-08T00:00:00.000Z)"
TIME_RANGE_VALUES: dict[str, tuple[str, ...]] = {
    "": ("> ago(7d)", f"between ({_START} .. {_END})"),
    "value": ("> ago(7d)", f"between ({_START} .. {_END})"),
    "query": ("> ago(7d)", f"between ({_START} .. {_END})"),
    "start": (_START,),
    "end": (_END,),
    "grain": ("1h",),
}


@dataclass(frozen=True)
class Query:
    """One KQL text to analyze; ``source`` says where it came from, for messages."""

    source: str
    text: str


@dataclass(frozen=True)
class Problem:
    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


# ---------------------------------------------------------------- schema


def load_tables(path: Path = TABLES_JSON) -> dict[str, list[dict[str, str]]]:
    """Table name -> columns (name, table type): tables.json's and APP_INSIGHTS_TABLES, each with
    the standard columns added."""
    schema = json.loads(path.read_text(encoding="utf-8"))
    declared = {
        schema[key]["table"]: [(c["name"], c["type"]) for c in schema[key]["columns"]]
        for key in ("usage", "gateway")
    }
    declared |= {name: list(columns) for name, columns in APP_INSIGHTS_TABLES.items()}
    tables: dict[str, list[dict[str, str]]] = {}
    for table, pairs in declared.items():
        columns = [{"name": n, "type": t} for n, t in pairs]
        names = {n for n, _ in pairs}
        columns += [{"name": n, "type": t} for n, t in STANDARD_COLUMNS if n not in names]
        tables[table] = columns
    return tables


def parse_prices(text: str) -> list[tuple[str, str, str, str]]:
    """``model=input/cachedInput/output,...`` (the USAGE_MODEL_PRICES format) as tuples of text."""
    prices = []
    for entry in text.strip().split(","):
        model, _, values = entry.partition("=")
        parts = [v.strip() for v in values.split("/")]
        if len(parts) != 3:
            raise ValueError(f"price entry {entry!r} is not model=input/cachedInput/output")
        for part in parts:
            float(part)  # json() in workbook.bicep refuses anything that is not a number
        prices.append((model.strip(), parts[0], parts[1], parts[2]))
    return prices


def price_rows(text: str) -> str:
    """The datatable rows workbook.bicep writes for a prices setting (same shape, typed as real)."""
    return ", ".join(
        f"'{model}', real({i}), real({cached}), real({o})"
        for model, i, cached, o in parse_prices(text)
    )


def default_price_rows() -> str:
    return price_rows(MODEL_PRICES.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- workbook


def _walk_items(items: list[dict[str, object]]) -> Iterator[dict[str, object]]:
    for item in items:
        yield item
        content = item.get("content")
        if isinstance(content, dict) and isinstance(content.get("items"), list):
            yield from _walk_items(content["items"])


def workbook_parameters(workbook: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """Every parameter the workbook declares, by name."""
    found: dict[str, dict[str, object]] = {}
    for item in _walk_items(list(workbook["items"])):  # type: ignore[call-overload]
        content = item.get("content")
        if item.get("type") == 9 and isinstance(content, dict):
            for param in content.get("parameters", []):
                found[str(param["name"])] = param
    return found


def _parameter_values(param: Mapping[str, object], fmt: str) -> tuple[str, ...] | None:
    """Typed stand-ins for one reference, or None when the format is not one the type has."""
    kind = param.get("type")
    if kind == 4:  # time range picker
        return TIME_RANGE_VALUES.get(fmt)
    if fmt not in ("", "value"):
        return None
    if kind == 2:  # drop-down: quoted values, or the "All" value, comma-separated
        quote = str(param.get("quote", ""))
        if param.get("multiSelect"):
            settings = param.get("typeSettings")
            every = settings.get("selectAllValue") if isinstance(settings, dict) else None
            values = [f"{quote}team-a{quote}, {quote}team-b{quote}"]
            if every is not None:
                values.append(f"{quote}{every}{quote}")
            return tuple(values)
        return (f"{quote}team-a{quote}",)
    if kind == 1:  # text
        return (str(param.get("value", "")),)
    return None


def expand(
    source: str, text: str, values: Mapping[str, Mapping[str, tuple[str, ...]]]
) -> tuple[list[Query], list[Problem]]:
    """Every variant of ``text`` with its references replaced (``values[name][format]``)."""
    problems: list[Problem] = []
    refs = sorted({(m.group(1), m.group(2) or "") for m in PARAMETER_REF.finditer(text)})
    choices: list[tuple[str, ...]] = []
    for name, fmt in refs:
        options = values.get(name, {}).get(fmt)
        if options is None:
            label = f"{{{name}:{fmt}}}" if fmt else f"{{{name}}}"
            problems.append(Problem(source, f"{label} is not a declared parameter or format"))
            options = ("",)
        choices.append(options)
    # Enough variants that every value of every parameter is used at least once.
    count = max((len(c) for c in choices), default=1)
    queries = []
    for index in range(count):
        picked = {ref: opts[index % len(opts)] for ref, opts in zip(refs, choices, strict=True)}

        def replace(m: re.Match[str], picked: dict[tuple[str, str], str] = picked) -> str:
            return picked[(m.group(1), m.group(2) or "")]

        suffix = f" (variant {index + 1})" if count > 1 else ""
        queries.append(Query(source + suffix, PARAMETER_REF.sub(replace, text)))
    return queries, problems


def workbook_queries(
    workbook: Mapping[str, object], rows: str | None = None
) -> tuple[list[Query], list[Problem]]:
    """The queries of the workbook's query items and parameters, parameters replaced."""
    rows = default_price_rows() if rows is None else rows
    params = workbook_parameters(workbook)
    values: dict[str, dict[str, tuple[str, ...]]] = {}
    for name, param in params.items():
        formats = {}
        for fmt in ("", "value", "query", "start", "end", "grain"):
            options = _parameter_values(param, fmt)
            if options is not None:
                formats[fmt] = options
        values[name] = formats

    texts: list[tuple[str, str]] = []
    for item in _walk_items(list(workbook["items"])):  # type: ignore[call-overload]
        content = item.get("content")
        if not isinstance(content, dict):
            continue
        name = str(item.get("name", "?"))
        if item.get("type") == 3 and content.get("queryType") == 0:
            texts.append((f"workbook item '{name}'", str(content["query"])))
        if item.get("type") == 9:
            for param in content.get("parameters", []):
                if param.get("queryType") == 0 and "query" in param:
                    texts.append((f"workbook parameter '{param['name']}'", str(param["query"])))

    queries: list[Query] = []
    problems: list[Problem] = []
    for source, text in texts:
        expanded, found = expand(source, text.replace(PRICE_ROWS_TOKEN, rows), values)
        queries += expanded
        problems += found
    return queries, problems


# ---------------------------------------------------------------- alerts and docs


def alert_queries(directory: Path = ALERTS_DIR) -> tuple[list[Query], list[Problem]]:
    values = {name: {"": (value,)} for name, value in ALERT_PLACEHOLDERS.items()}
    queries: list[Query] = []
    problems: list[Problem] = []
    for path in sorted(directory.glob("*.kql")):
        expanded, found = expand(
            f"alert query {path.name}", path.read_text(encoding="utf-8"), values
        )
        queries += expanded
        problems += found
    return queries, problems


def doc_queries(path: Path = DOC) -> list[Query]:
    """The fenced ```kusto blocks of a Markdown page, each as written (nothing replaced)."""
    text = path.read_text(encoding="utf-8")
    blocks = re.findall(r"^```kusto\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    return [Query(f"{path.name} kusto block {i + 1}", block) for i, block in enumerate(blocks)]


# ---------------------------------------------------------------- analysis


class AnalyzerUnavailable(RuntimeError):
    """Node or the npm package is missing."""


@dataclass(frozen=True)
class Analysis:
    """What the language service found for one query: its errors and the columns it returns."""

    query: Query
    problems: list[Problem]
    columns: dict[str, str]  # name -> Kusto type (string, long, real, datetime, ...)


def run(tables: Mapping[str, list[dict[str, str]]], queries: list[Query]) -> list[Analysis]:
    """Bind every query with the Kusto language service; errors only (warnings are not failures)."""
    node = shutil.which("node")
    if node is None:
        raise AnalyzerUnavailable("Node.js is not installed: run `npm install` after installing it")
    if not (ROOT / "node_modules" / "@kusto" / "language-service-next").is_dir():
        raise AnalyzerUnavailable("@kusto/language-service-next is missing: run `npm install`")
    payload = {
        "tables": tables,
        "queries": [{"id": str(i), "text": q.text} for i, q in enumerate(queries)],
    }
    done = subprocess.run(
        [node, str(ANALYZER)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"analyze.cjs failed: {done.stderr.strip()}")
    analyses = []
    for result in json.loads(done.stdout):
        query = queries[int(result["id"])]
        problems = []
        for d in result["diagnostics"]:
            if d["severity"] != "Error":
                continue
            line = query.text.count("\n", 0, d["start"]) + 1
            snippet = query.text[d["start"] : d["end"]]
            problems.append(
                Problem(query.source, f"line {line}: {d['code']} {d['message']} ({snippet!r})")
            )
        columns = {c["name"]: c["type"] for c in result["columns"]}
        analyses.append(Analysis(query, problems, columns))
    return analyses


def analyze(tables: Mapping[str, list[dict[str, str]]], queries: list[Query]) -> list[Problem]:
    """Errors the Kusto language service reports for each query."""
    return [p for a in run(tables, queries) for p in a.problems]


def all_queries() -> tuple[list[Query], list[Problem]]:
    workbook = json.loads(WORKBOOK_JSON.read_text(encoding="utf-8"))
    queries, problems = workbook_queries(workbook)
    more, found = alert_queries()
    return queries + more + doc_queries() + doc_queries(DELIVERY_DOC), problems + found


def check() -> list[Problem]:
    """Every problem of every shipped query (empty when all bind)."""
    queries, problems = all_queries()
    return problems + analyze(load_tables(), queries)


def main() -> int:
    problems = check()
    for problem in problems:
        print(problem)
    queries, _ = all_queries()
    print(f"kql-check: {len(queries)} queries, {len(problems)} problems")
    return 1 if problems else 0
