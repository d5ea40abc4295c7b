// Semantic analysis of KQL with Microsoft's Kusto language service (npm @kusto/language-service-next,
// the Kusto.Language library compiled to JavaScript: the same parser and binder as the Kusto tools).
// Input on stdin: {"tables": {"<Table>": [{"name", "type"}]}, "queries": [{"id", "text"}]}, types being
// Log Analytics table column types (string, int, long, real, boolean, dateTime, guid, dynamic).
// Output on stdout: [{"id", "diagnostics": [{"severity", "code", "message", "start", "end"}],
// "columns": [{"name", "type"}] (the result's columns, Kusto type names; [] when not tabular)}].
// Every query is bound against a database holding exactly those tables, so an unknown table, column or
// function is an error (KS142 / KS211 ...), as is any syntax error. kql_check/__init__.py drives this.
'use strict';

require('@kusto/language-service-next/bridge.js');
require('@kusto/language-service-next');

const K = globalThis.Kusto.Language;
const S = K.Symbols;

// https://learn.microsoft.com/azure/azure-monitor/logs/create-custom-table (column types)
// https://learn.microsoft.com/kusto/query/scalar-data-types/ (Kusto scalar types)
const SCALAR = {
  string: S.ScalarTypes.String,
  int: S.ScalarTypes.Int,
  long: S.ScalarTypes.Long,
  real: S.ScalarTypes.Real,
  boolean: S.ScalarTypes.Bool,
  dateTime: S.ScalarTypes.DateTime,
  guid: S.ScalarTypes.Guid,
  dynamic: S.ScalarTypes.Dynamic,
};

function database(tables) {
  const symbols = Object.entries(tables).map(([name, columns]) => {
    const cols = columns.map((c) => {
      const type = SCALAR[c.type];
      if (type === undefined) {
        throw new Error(`table ${name}: column ${c.name} has unknown type ${c.type}`);
      }
      return new S.ColumnSymbol(c.name, type);
    });
    return new S.TableSymbol.$ctor4(name, cols);
  });
  return new S.DatabaseSymbol('workspace', symbols);
}

function analyze(input) {
  const globals = K.GlobalState.Default.WithDatabase(database(input.tables));
  return input.queries.map((q) => {
    const code = K.KustoCode.ParseAndAnalyze(q.text, globals);
    const diagnostics = globalThis.Bridge.toArray(code.GetDiagnostics()).map((d) => ({
      severity: String(d.Severity),
      code: String(d.Code),
      message: String(d.Message),
      start: d.Start,
      end: d.End,
    }));
    const result = code.ResultType;
    const columns =
      result && result.Columns
        ? globalThis.Bridge.toArray(result.Columns).map((c) => ({
            name: String(c.Name),
            type: String(c.Type.Name),
          }))
        : [];
    return { id: q.id, diagnostics, columns };
  });
}

const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  process.stdout.write(JSON.stringify(analyze(input)));
});
