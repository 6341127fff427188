#!/usr/bin/env node
// Checks a KQL query with Microsoft's Kusto parser against a declared table schema.
//
// Usage:
//   node check_kql.js --table AppMetrics --columns "(TimeGenerated:datetime, Name:string)" --query "AppMetrics | take 1"
//   echo '{"table": "AppMetrics", "columns": [["Name", "string"]], "query": "AppMetrics"}' | node check_kql.js
//   node check_kql.js --lines    (one JSON request a line in, one JSON result a line out)
//
// `columns` is either the parser's own schema text "(name:type, ...)" or a list of
// [name, type] pairs. A query over several tables sends `tables`, a list of {table, columns},
// instead of `table` and `columns`. Prints one JSON object: the diagnostics (severity, message, start,
// length) and the decoded value of every string literal, so a caller can check that what it
// escaped reads back as what it meant. Exits 1 when any diagnostic is an error, 2 on misuse.
// With --lines the parser is loaded once and each result also carries "errors": true/false,
// so a test session pays the parser's start-up once.
"use strict";

const fs = require("fs");
const path = require("path");

const PACKAGE = path.join(__dirname, "..", "..", "node_modules", "@kusto", "language-service-next");

function loadKusto() {
    require(path.join(PACKAGE, "bridge.js"));
    require(path.join(PACKAGE, "Kusto.Language.Bridge.js"));
    return globalThis.Kusto.Language;
}

function parseArgs(argv) {
    const options = {};
    for (let i = 0; i < argv.length; i += 2) {
        const flag = argv[i];
        const value = argv[i + 1];
        if (!flag.startsWith("--") || value === undefined) {
            throw new Error(`expected --flag value pairs, got ${JSON.stringify(argv.slice(i))}`);
        }
        options[flag.slice(2)] = value;
    }
    if (options["query-file"] !== undefined) {
        options.query = fs.readFileSync(options["query-file"], "utf8");
    }
    return options;
}

function schemaText(columns) {
    if (typeof columns === "string") {
        return columns;
    }
    if (!Array.isArray(columns) || columns.some((c) => !Array.isArray(c) || c.length !== 2)) {
        throw new Error("columns must be schema text or a list of [name, type] pairs");
    }
    return "(" + columns.map(([name, type]) => `${name}:${type}`).join(", ") + ")";
}

function tableSymbols(Kusto, request) {
    const declared = request.tables !== undefined ? request.tables : [{ table: request.table, columns: request.columns }];
    if (!Array.isArray(declared) || declared.length === 0) {
        throw new Error("tables must be a non-empty list of {table, columns}");
    }
    return declared.map((entry) => {
        for (const field of ["table", "columns"]) {
            if (entry[field] === undefined) {
                throw new Error(`missing ${field}`);
            }
        }
        return new Kusto.Symbols.TableSymbol.$ctor7(entry.table, schemaText(entry.columns), null);
    });
}

function check(Kusto, request) {
    if (request.query === undefined) {
        throw new Error("missing query");
    }
    const tables = tableSymbols(Kusto, request);
    const database = new Kusto.Symbols.DatabaseSymbol(request.database || "workspace", tables);
    const globals = Kusto.GlobalState.Default.WithDatabase(database);
    const code = Kusto.KustoCode.ParseAndAnalyze(request.query, globals);

    const found = code.GetDiagnostics();
    const diagnostics = [];
    for (let i = 0; i < found.Count; i++) {
        const d = found.getItem(i);
        diagnostics.push({ severity: d.Severity, message: d.Message, start: d.Start, length: d.Length });
    }
    const strings = [];
    code.Syntax.WalkElements((element) => {
        if (element instanceof Kusto.Syntax.LiteralExpression && typeof element.LiteralValue === "string") {
            strings.push(element.LiteralValue);
        }
    });
    return { diagnostics, strings };
}

function hasErrors(result) {
    return result.diagnostics.some((d) => d.severity === "Error");
}

function serveLines(Kusto) {
    const lines = require("readline").createInterface({ input: process.stdin, terminal: false });
    lines.on("line", (line) => {
        if (!line.trim()) {
            return;
        }
        let answer;
        try {
            const result = check(Kusto, JSON.parse(line));
            answer = { ...result, errors: hasErrors(result) };
        } catch (error) {
            answer = { failure: error.message };
        }
        process.stdout.write(JSON.stringify(answer) + "\n");
    });
}

function main() {
    if (process.argv.length === 3 && process.argv[2] === "--lines") {
        serveLines(loadKusto());
        return undefined;
    }
    let request;
    try {
        const args = parseArgs(process.argv.slice(2));
        request = args.query !== undefined ? args : JSON.parse(fs.readFileSync(0, "utf8"));
    } catch (error) {
        process.stderr.write(`check_kql: ${error.message}\n`);
        return 2;
    }
    let result;
    try {
        result = check(loadKusto(), request);
    } catch (error) {
        process.stderr.write(`check_kql: ${error.message}\n`);
        return 2;
    }
    process.stdout.write(JSON.stringify(result, null, 2) + "\n");
    return hasErrors(result) ? 1 : 0;
}

process.exitCode = main();
