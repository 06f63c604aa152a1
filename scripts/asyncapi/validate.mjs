// Parses an AsyncAPI document with the AsyncAPI project's own parser
// (@asyncapi/parser, its schema and Spectral rules) and prints every
// diagnostic; exits 1 when one is an error, or the document does not parse.
// Run by scripts/asyncapi/validate, which installs the parser:
//   node validate.mjs <node_modules folder> <document.json>
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const [modules, file] = process.argv.slice(2);
if (!modules || !file) {
  console.error("usage: node validate.mjs <node_modules folder> <document.json>");
  process.exit(2);
}
const require = createRequire(join(modules, "index.js"));
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");

const names = Object.fromEntries(Object.entries(DiagnosticSeverity).map(([name, level]) => [level, name]));
const { document, diagnostics } = await new Parser().parse(readFileSync(file, "utf8"), { source: file });
for (const { severity, code, message, path } of diagnostics) {
  console.log(`${names[severity] ?? severity} ${code}: ${message} (at /${path.join("/")})`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error).length;
if (!document || errors > 0) {
  console.error(`${file}: ${errors} error(s); the document ${document ? "parses" : "does not parse"}`);
  process.exit(1);
}
const messages = document.allMessages().length;
console.log(`${file}: AsyncAPI ${document.version()}, ${messages} messages, ${diagnostics.length} diagnostic(s), no error`);
