// Parse an AsyncAPI document with the official @asyncapi/parser and print its diagnostics as JSON.
// Usage: node asyncapi_parse.mjs NODE_MODULES_DIR FILE
// Prints [{"severity": "error"|"warning"|"information"|"hint", "code", "message", "path"}, ...].
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const [modules, file] = process.argv.slice(2);
const require = createRequire(join(modules, "noop.js"));
const { Parser } = require("@asyncapi/parser");
const SEVERITY = ["error", "warning", "information", "hint"];

const { diagnostics } = await new Parser().parse(readFileSync(file, "utf8"), { source: file });
const shown = diagnostics.map((d) => ({
  severity: SEVERITY[d.severity] ?? String(d.severity),
  code: String(d.code),
  message: d.message,
  path: d.path.join("/"),
}));
process.stdout.write(JSON.stringify(shown, null, 1) + "\n");
