#!/usr/bin/env node
// kusto-check: parse and semantically bind KQL queries with Kusto.Language, Microsoft's own KQL
// parser/binder (npm @kusto/language-service-next, C# compiled to JavaScript with Bridge.NET),
// against hubwatch's Log Analytics table schemas.
//
//   node tools/kusto-check/check.mjs --schemas schemas/tables < input.json > output.json
//
// input:  [{"name": "...", "query": "..."}, ...]     ("kql" is accepted in place of "query")
// output: [{"name", "ok", "errors": [{"message","code","start","length"}], "columns": [{"name","type"}]}, ...]
//
// "ok" means Kusto.Language reported no diagnostic of severity Error. "columns" (present only when
// ok) are the names and Kusto types of the query's tabular result. start/length are offsets in
// UTF-16 code units into the query text (the same as byte offsets for ASCII queries).
//
// Options:
//   --schemas DIR    directory of <Table>.json files (required)
//   --common FILE    columns every resource_log table gets (default: DIR/../common.json)
//   --warnings       also report non-error diagnostics, as "warnings" (same shape as "errors")
//   --no-la          do not declare the Log Analytics cross-resource functions (see below)
//   --pretty         indent the output
//   --timing         print load/analysis times to stderr
//
// Log Analytics: Kusto.Language models Azure Data Explorer; it knows nothing of Log Analytics'
// workspace("..."), app("...") and resource("...") scopes. Unless --no-la is given they are
// declared as functions taking a string and returning the hubwatch database, so
// workspace("w").AzureActivity binds to the same table as AzureActivity.

import { createRequire } from "node:module";
import { readFileSync, readdirSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const PKG = "@kusto/language-service-next";

function die(msg) {
  process.stderr.write(`kusto-check: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { schemas: null, common: null, warnings: false, la: true, pretty: false, timing: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) die(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--schemas") opts.schemas = val();
    else if (a.startsWith("--schemas=")) opts.schemas = a.slice(10);
    else if (a === "--common") opts.common = val();
    else if (a.startsWith("--common=")) opts.common = a.slice(9);
    else if (a === "--warnings") opts.warnings = true;
    else if (a === "--no-la") opts.la = false;
    else if (a === "--pretty") opts.pretty = true;
    else if (a === "--timing") opts.timing = true;
    else if (a === "-h" || a === "--help") {
      process.stdout.write(
        "usage: node check.mjs --schemas DIR [--common FILE] [--warnings] [--no-la] [--pretty] [--timing] < queries.json\n",
      );
      process.exit(0);
    } else die(`unknown argument: ${a}`);
  }
  if (!opts.schemas) die("--schemas DIR is required");
  return opts;
}

// Bridge.NET's runtime (bridge.js) must be loaded before the compiled assembly; both install
// globals (Bridge, System, Kusto). They are CommonJS scripts, so load them with require().
function loadKusto() {
  const require = createRequire(join(here, "package.json"));
  let pkgDir;
  try {
    pkgDir = dirname(require.resolve(`${PKG}/package.json`));
  } catch {
    die(`${PKG} is not installed; run tools/kusto-check/setup.sh`);
  }
  require(join(pkgDir, "bridge.min.js"));
  require(join(pkgDir, "Kusto.Language.Bridge.min.js"));
  const g = globalThis;
  if (!g.Kusto || !g.Kusto.Language || !g.Bridge) die(`${PKG} did not define Kusto.Language`);
  return { K: g.Kusto.Language, Bridge: g.Bridge };
}

const t0 = performance.now();
const { K, Bridge } = loadKusto();
const tLoaded = performance.now();
const S = K.Symbols;

// Bridge.NET collections (IReadOnlyList<T>, IEnumerable<T>) -> JS array.
function toArray(list) {
  const out = [];
  if (!list) return out;
  const e = Bridge.getEnumerator(list);
  while (e.moveNext()) out.push(e.Current);
  return out;
}

// hubwatch / Log Analytics type names -> Kusto.Language scalar type symbols.
const TYPES = {
  string: S.ScalarTypes.String,
  long: S.ScalarTypes.Long,
  int: S.ScalarTypes.Int,
  real: S.ScalarTypes.Real,
  double: S.ScalarTypes.Real,
  bool: S.ScalarTypes.Bool,
  boolean: S.ScalarTypes.Bool,
  datetime: S.ScalarTypes.DateTime,
  date: S.ScalarTypes.DateTime,
  timespan: S.ScalarTypes.TimeSpan,
  time: S.ScalarTypes.TimeSpan,
  dynamic: S.ScalarTypes.Dynamic,
  guid: S.ScalarTypes.Guid,
  uniqueid: S.ScalarTypes.Guid,
  decimal: S.ScalarTypes.Decimal,
};

function readJson(path) {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    die(`${path}: ${e.message}`);
  }
}

// Mirrors hubwatch's src/schema.rs: a resource_log table gets common.json's columns first; a
// table column of the same name replaces the common one in place, the others are appended.
function loadTables(schemasDir, commonPath) {
  if (!existsSync(schemasDir)) die(`no such directory: ${schemasDir}`);
  const files = readdirSync(schemasDir).filter((f) => f.endsWith(".json")).sort();
  if (files.length === 0) die(`no table files in ${schemasDir}`);
  const common = existsSync(commonPath) ? readJson(commonPath).columns ?? [] : null;
  const tables = [];
  for (const f of files) {
    const def = readJson(join(schemasDir, f));
    if (typeof def.table !== "string" || !Array.isArray(def.columns)) {
      die(`${f}: not a table file (needs "table" and "columns")`);
    }
    const cols = [];
    if (def.kind === "resource_log") {
      if (common === null) die(`${f} is a resource_log table but ${commonPath} does not exist`);
      cols.push(...common);
    }
    for (const c of def.columns) {
      const i = cols.findIndex((x) => x.name === c.name);
      if (i >= 0) cols[i] = c;
      else cols.push(c);
    }
    const symbols = cols.map((c) => {
      const ty = TYPES[String(c.type).toLowerCase()];
      if (!ty) die(`${f}: column ${c.name}: unknown type '${c.type}'`);
      return new S.ColumnSymbol(c.name, ty, c.description ?? null, null, null, null);
    });
    tables.push(new S.TableSymbol.$ctor4(def.table, symbols));
  }
  return tables;
}

function buildGlobals(tables, la) {
  const db = new S.DatabaseSymbol.ctor("hubwatch", tables);
  let globals = K.GlobalState.Default.WithDatabase(db);
  if (la) {
    // workspace("name").Table, app("name").Table, resource("id").Table
    const fns = ["workspace", "app", "resource"].map(
      (name) => new S.FunctionSymbol.$ctor5(name, db, [new S.Parameter.$ctor2("id", S.ScalarTypes.String)]),
    );
    globals = addFunctions(globals, fns);
  }
  return globals;
}

function addFunctions(globals, fns) {
  const all = toArray(globals.Functions).concat(fns);
  const list = new (globalThis.System.Collections.Generic.List$1(S.FunctionSymbol))();
  for (const f of all) list.add(f);
  return globals.WithFunctions(list);
}

function typeName(t) {
  if (!t) return "unknown";
  // Dynamic arrays/bags (DynamicArraySymbol, DynamicBagSymbol, ...) are all plain "dynamic".
  if (t instanceof S.DynamicSymbol) return "dynamic";
  return t.Name ?? "unknown";
}

function diag(d) {
  return { message: d.Message, code: d.Code, start: d.Start, length: d.Length };
}

function check(globals, item, opts) {
  const name = item && typeof item === "object" ? item.name ?? null : null;
  const query = item && typeof item === "object" ? item.query ?? item.kql : undefined;
  if (typeof query !== "string") {
    return {
      name,
      ok: false,
      errors: [{ message: "input item has no string 'query'", code: "input", start: 0, length: 0 }],
    };
  }
  let code;
  try {
    code = K.KustoCode.ParseAndAnalyze(query, globals);
  } catch (e) {
    return {
      name,
      ok: false,
      errors: [{ message: `Kusto.Language threw: ${e && e.message ? e.message : e}`, code: "internal", start: 0, length: 0 }],
    };
  }
  const diags = toArray(code.GetDiagnostics());
  const errors = diags.filter((d) => d.Severity === "Error").map(diag);
  const out = { name, ok: errors.length === 0, errors };
  if (opts.warnings) out.warnings = diags.filter((d) => d.Severity !== "Error").map(diag);
  if (out.ok) {
    const rt = code.ResultType;
    if (rt instanceof S.TableSymbol) {
      out.columns = toArray(rt.Columns).map((c) => ({ name: c.Name, type: typeName(c.Type) }));
    } else {
      // A scalar expression or a statement with no tabular result.
      out.columns = [];
      if (rt) out.scalar = typeName(rt);
    }
  }
  return out;
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const schemasDir = resolve(opts.schemas);
  const commonPath = resolve(opts.common ?? join(schemasDir, "..", "common.json"));
  const globals = buildGlobals(loadTables(schemasDir, commonPath), opts.la);

  let input;
  try {
    input = JSON.parse(readFileSync(0, "utf8"));
  } catch (e) {
    die(`stdin is not JSON: ${e.message}`);
  }
  if (!Array.isArray(input)) die("stdin must be a JSON array of {name, query}");

  const tReady = performance.now();
  const times = [];
  const results = input.map((item) => {
    const t = performance.now();
    const r = check(globals, item, opts);
    times.push(performance.now() - t);
    return r;
  });
  if (opts.timing) {
    const ms = (x) => `${Math.round(x)} ms`;
    const rest = times.slice(1).reduce((a, b) => a + b, 0);
    process.stderr.write(
      `kusto-check: load ${ms(tLoaded - t0)}, schemas ${ms(tReady - tLoaded)}, ` +
        `${times.length} queries ${ms(times.reduce((a, b) => a + b, 0))} ` +
        `(first ${ms(times[0] ?? 0)}, others ${times.length > 1 ? (rest / (times.length - 1)).toFixed(1) : 0} ms each)\n`,
    );
  }
  process.stdout.write(JSON.stringify(results, null, opts.pretty ? 2 : undefined) + "\n");
}

main();
