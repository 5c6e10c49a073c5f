/**
 * Every ```ts block of README.md and docs/*.md typechecks as a module of a
 * project that installs this package, so a renamed export, a wrong subpath
 * or a changed signature shows up here rather than in a reader's editor.
 *
 * Most blocks leave some names to the reader (`orders`, `user`, a `pool`).
 * A block that uses no such name is a complete program: it must typecheck
 * as written, under the project's own strict options. Any other block is
 * checked again with each name it leaves undefined declared as `any` (the
 * block is then unchecked only where it touches those names), or imported
 * when the package exports it (a block that calls `gather` without its
 * import is still held to gather's signature), and must typecheck too. A block showing several files, each headed by a
 * `// name.ts` comment, is split into them. Imports of packages this
 * project does not depend on are left unresolved, and so are the exports of
 * a package a block names, in its first line, at a version other than the
 * one installed (`// @opentelemetry/sdk-node 0.30x's startNodeSdk()`).
 * README.md's first block is also run, in examples.test.ts.
 *
 * Also checked here: README.md's API section against what the package
 * exports, and every relative link and #anchor between the docs.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { runtime } from "../runtimes/runtime.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));

interface Snippet {
  readonly path: string;
  /** The line its code starts on (1-based). */
  readonly line: number;
  readonly code: string;
}

interface Diagnostic {
  readonly file: string;
  readonly line: number;
  readonly code: number;
  readonly message: string;
}

/** The ```ts blocks of one Markdown file, unindented, split at `// name.ts` headings. */
function snippetsOf(path: string): Snippet[] {
  const lines = readFileSync(join(root, path), "utf8").split("\n");
  const snippets: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```ts\s*$/.exec(lines[i] as string);
    if (!open) continue;
    const indent = (open[1] as string).length;
    let start = i + 1;
    let body: string[] = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i] as string); i++) {
      const line = (lines[i] as string).slice(indent);
      // A second file shown in the same block starts a snippet of its own.
      if (/^\/\/ [\w.-]+\.(ts|js|mjs)\b/.test(line) && body.some((l) => l.trim() !== "")) {
        snippets.push({ path, line: start + 1, code: body.join("\n") });
        start = i;
        body = [];
      }
      body.push(line);
    }
    snippets.push({ path, line: start + 1, code: body.join("\n") });
  }
  return snippets;
}

/**
 * Typechecks each snippet as its own module (`NN.ts`) in a directory inside
 * the project, so `contextvars` resolves through the package's own exports
 * map and other packages through its node_modules; returns tsc's diagnostics.
 */
async function typecheck(
  codes: readonly string[],
  options: Record<string, boolean | string>,
): Promise<Diagnostic[]> {
  const dir = mkdtempSync(join(root, ".docs-snippets-"));
  try {
    codes.forEach((code, n) => {
      writeFileSync(join(dir, `${n}.ts`), `${code}\nexport {};\n`);
    });
    const tsconfig = {
      extends: "../tsconfig.json",
      // A reader's unused variable is not the package's concern.
      compilerOptions: { noUnusedLocals: false, noUnusedParameters: false, ...options },
      include: ["*.ts"],
    };
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify(tsconfig));
    const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
    const { failed, output } = await promisify(execFile)(
      process.execPath,
      [tsc, "-p", dir, "--pretty", "false"],
      { cwd: root, timeout: 60_000 },
    ).then(
      (done) => ({ failed: undefined, output: done.stdout }),
      (error: Error & { stdout?: string; stderr?: string }) => ({
        failed: error,
        output: error.stdout ?? "",
      }),
    );
    const diagnostics: Diagnostic[] = [];
    for (const line of output.split("\n")) {
      const found = /^(?:.*[\\/])?(\d+)\.ts\((\d+),\d+\): error TS(\d+): (.*)$/.exec(line);
      if (found) {
        const [, file, at, code, message] = found;
        diagnostics.push({
          file: file as string,
          line: Number(at),
          code: Number(code),
          message: message as string,
        });
      } else if (line.trim() !== "" && !/^\s/.test(line)) {
        assert.fail(`tsc said something about no snippet: ${line}`);
      }
    }
    // tsc exits non-zero when it reports errors; without one it did not run.
    if (failed && diagnostics.length === 0)
      assert.fail(`tsc failed: ${failed.message} ${failed.stderr}`);
    return diagnostics;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Blocks compiled the way their framework's projects compile them, each kind
 * in a project of its own: Nest's decorators are typed for
 * `experimentalDecorators`, and Next compiles an app's modules with a
 * bundler, which resolves subpaths such as `next/headers` that Node's ESM
 * resolution does not.
 */
const projectKinds: readonly {
  readonly matches: (code: string) => boolean;
  readonly options: Record<string, boolean | string>;
}[] = [
  { matches: (code) => /from "@nestjs\//.test(code), options: { experimentalDecorators: true } },
  {
    matches: (code) => /from "next\//.test(code),
    options: { module: "preserve", moduleResolution: "bundler" },
  },
];

/**
 * `typecheck`, with the blocks of each of `projectKinds` in a project of
 * their own under its options; diagnostics name the snippets' indexes.
 */
async function typecheckSnippets(
  codes: readonly string[],
  options: Record<string, boolean | string>,
): Promise<Diagnostic[]> {
  const kindOf = (code: string): number => projectKinds.findIndex((kind) => kind.matches(code));
  const groups = [-1, ...projectKinds.keys()].map((kind) => ({
    indexes: codes.flatMap((code, n) => (kindOf(code) === kind ? [n] : [])),
    options: { ...options, ...projectKinds[kind]?.options },
  }));
  const checked = await Promise.all(
    groups.map(async (group) => {
      if (group.indexes.length === 0) return [];
      const diagnostics = await typecheck(
        group.indexes.map((n) => codes[n] as string),
        group.options,
      );
      return diagnostics.map((d) => ({ ...d, file: String(group.indexes[Number(d.file)]) }));
    }),
  );
  return checked.flat();
}

const manifest = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as Record<
  string,
  Record<string, string> | undefined
>;
const dependedOn = new Set(
  ["dependencies", "devDependencies", "peerDependencies"].flatMap((key) =>
    Object.keys(manifest[key] ?? {}),
  ),
);

/** The name a diagnostic says the snippet leaves undefined, if it says that. */
function leftToReader(d: Diagnostic): string | undefined {
  if (d.code === 2304 || d.code === 2552 || d.code === 18004) {
    return /'([^']+)'/.exec(d.message)?.[1];
  }
  return undefined;
}

/** Whether a diagnostic is an import of a package this project does not depend on. */
function notInstalledHere(d: Diagnostic): boolean {
  const specifier = d.code === 2307 ? /'([^']+)'/.exec(d.message)?.[1] : undefined;
  if (specifier === undefined || specifier.startsWith("contextvars")) return false;
  const name = specifier
    .split("/")
    .slice(0, specifier.startsWith("@") ? 2 : 1)
    .join("/");
  return !dependedOn.has(name);
}

/**
 * The package a snippet's first line names at a version other than the one
 * installed here (`// @opentelemetry/sdk-node 0.30x's ...` where 0.223 is),
 * if it names one.
 */
function otherVersionOf(snippet: Snippet): string | undefined {
  const named = /^\/\/ (@?[a-z][\w.-]*(?:\/[\w.-]+)?) (\d+(?:\.\d+)*)x?\b/.exec(snippet.code);
  if (named === null) return undefined;
  const [, name, version] = named as unknown as [string, string, string];
  const manifest = join(root, "node_modules", name, "package.json");
  if (!existsSync(manifest)) return undefined;
  const installed = (JSON.parse(readFileSync(manifest, "utf8")) as { version: string }).version;
  return installed.startsWith(version) ? undefined : name;
}

/** Whether a diagnostic is about an export of the package `snippet` names at another version. */
function otherVersion(snippet: Snippet | undefined, d: Diagnostic): boolean {
  const name = snippet === undefined ? undefined : otherVersionOf(snippet);
  return (
    name !== undefined && (d.code === 2305 || d.code === 2724) && d.message.includes(`"${name}"`)
  );
}

function show(snippets: readonly Snippet[], diagnostics: readonly Diagnostic[]): string {
  return diagnostics
    .map((d) => {
      const snippet = snippets[Number(d.file)] as Snippet;
      return `${snippet.path}:${snippet.line + d.line - 1}: TS${d.code} ${d.message}`;
    })
    .join("\n");
}

/**
 * Each name the package's subpaths export, with the subpath to import it
 * from: the first that exports it, if every subpath exporting it exports the
 * same value (`requestId`); a name with different values (`contextMiddleware`)
 * is left out.
 */
async function packageExports(): Promise<Map<string, string>> {
  const subpaths = Object.keys(manifest.exports ?? {}).filter(
    (key) => key.startsWith(".") && !key.endsWith(".json"),
  );
  const found = new Map<string, { from: string; value: unknown } | undefined>();
  for (const key of subpaths) {
    const specifier = key === "." ? "contextvars" : `contextvars/${key.slice(2)}`;
    const module = (await import(specifier)) as Record<string, unknown>;
    for (const [name, value] of Object.entries(module)) {
      if (!found.has(name)) found.set(name, { from: specifier, value });
      else if (found.get(name)?.value !== value) found.set(name, undefined);
    }
  }
  const exported = new Map<string, string>();
  for (const [name, entry] of found) if (entry !== undefined) exported.set(name, entry.from);
  return exported;
}

const onNode = { skip: runtime === "node" ? false : "tsc runs on node" };

describe("docs snippets", () => {
  it("every ts block of README.md and docs/*.md typechecks", onNode, async (t) => {
    const docs = readdirSync(join(root, "docs"))
      .filter((name) => name.endsWith(".md"))
      .sort()
      .map((name) => `docs/${name}`);
    const snippets = ["README.md", ...docs].flatMap(snippetsOf);
    assert.ok(snippets.length >= 20, `${snippets.length} blocks found`);

    const strict = await typecheckSnippets(
      snippets.map((s) => s.code),
      {},
    );
    const undefinedNames = snippets.map(() => new Set<string>());
    for (const d of strict) {
      const name = leftToReader(d);
      if (name !== undefined) undefinedNames[Number(d.file)]?.add(name);
    }
    const complete = snippets.filter((_, n) => undefinedNames[n]?.size === 0);
    t.diagnostic(`${snippets.length} snippets, ${complete.length} of them complete programs`);
    assert.ok(complete.length >= 3, `${complete.length} complete programs`);
    const wrong = strict.filter(
      (d) =>
        undefinedNames[Number(d.file)]?.size === 0 &&
        !notInstalledHere(d) &&
        !otherVersion(snippets[Number(d.file)], d),
    );
    assert.deepEqual(
      wrong,
      [],
      `complete programs that do not typecheck:\n${show(snippets, wrong)}`,
    );

    // The fragments again, with what they leave to the reader declared. A
    // value declared `any` gives a callback passed to it no parameter types,
    // which the reader's real one would: implicit any is allowed here.
    const fragments = snippets
      .map((snippet, n) => ({ snippet, names: [...(undefinedNames[n] ?? [])] }))
      .filter(({ names }) => names.length > 0);
    // A name the package exports is imported rather than declared, so a block
    // that calls `gather` or `toThread` without importing it is still held to
    // the real signature.
    const exported = await packageExports();
    const completed = fragments.map(({ snippet, names }) =>
      [
        ...names.map((name) => {
          const from = exported.get(name);
          return from === undefined
            ? `type ${name} = any; declare const ${name}: any;`
            : `import { ${name} } from "${from}";`;
        }),
        snippet.code,
      ].join(" "),
    );
    const loose = await typecheckSnippets(completed, { noImplicitAny: false });
    const wrongFragments = loose.filter(
      (d) => !notInstalledHere(d) && !otherVersion(fragments[Number(d.file)]?.snippet, d),
    );
    assert.deepEqual(
      wrongFragments,
      [],
      `blocks that do not typecheck with their free names declared:\n${show(
        fragments.map((f) => f.snippet),
        wrongFragments,
      )}`,
    );
  });
});

describe("figures the docs give about the tests", () => {
  it("docs/guarantees.md counts test/types' @ts-expect-error cases as they are", () => {
    const doc = readFileSync(join(root, "docs", "guarantees.md"), "utf8");
    const stated = /\((\d+) `@ts-expect-error` cases\)/.exec(doc)?.[1];
    assert.ok(stated !== undefined, "docs/guarantees.md states a count");
    const dir = join(root, "test", "types");
    const counted = readdirSync(dir)
      .filter((name) => name.endsWith(".ts"))
      .reduce(
        (sum, name) =>
          sum +
          (readFileSync(join(dir, name), "utf8").match(/^\s*\/\/ @ts-expect-error/gm)?.length ?? 0),
        0,
      );
    assert.equal(Number(stated), counted);
  });
});

describe("README.md's API section", () => {
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const api = /^## API\n([\s\S]*?)^## /m.exec(readme)?.[1] ?? "";

  it("names every error class the package exports, each with its codes", async () => {
    const paragraph = /^Errors are instances of `ContextError`[\s\S]*?\n\n/m.exec(api)?.[0];
    assert.ok(paragraph !== undefined, "README.md's API section lists the errors");
    const { ContextError, ...core } = (await import("contextvars")) as Record<string, unknown> & {
      ContextError: abstract new (...args: never[]) => Error;
    };
    const classes = Object.entries(core)
      .filter(([, value]) => typeof value === "function" && value.prototype instanceof ContextError)
      .map(([name]) => name);
    assert.ok(classes.length >= 7, classes.join(", "));
    // Each code beside its class, as src/errors.ts's table pairs them.
    const source = readFileSync(join(root, "src", "errors.ts"), "utf8");
    const codes = [...source.matchAll(/^\s+(ERR_[A-Z_]+): \[\s*(\w+),/gm)].map(
      ([, code, name]) => [code as string, name as string] as const,
    );
    assert.deepEqual(new Set(codes.map(([, name]) => name)), new Set(classes));
    const missing = [
      ...classes.filter((name) => !paragraph.includes(`\`${name}\``)),
      ...codes.filter(([code]) => !paragraph.includes(`\`${code}\``)).map(([code]) => code),
    ];
    assert.deepEqual(missing, [], "named in src/errors.ts, not in README.md");
  });

  it("its tables name only what contextvars exports", async () => {
    const core = (await import("contextvars")) as Record<string, unknown>;
    const rows = api.split("\n").filter((line) => /^\| `/.test(line));
    assert.ok(rows.length >= 14, `${rows.length} rows`);
    const names = rows.flatMap((row) =>
      [...(row.split("|")[1] as string).matchAll(/`(?:new )?([A-Za-z]\w*)/g)].map(
        ([, name]) => name as string,
      ),
    );
    assert.deepEqual(
      names.filter((name) => !(name in core)),
      [],
    );
  });
});

/** The anchors GitHub gives a Markdown file's headings (and its `<a id>`s). */
function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of text.split("\n")) {
    if (/^\s*```/.test(line)) fenced = !fenced;
    if (fenced) continue;
    const heading = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)?.[1];
    if (heading !== undefined) {
      const slug = heading
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, "")
        .replace(/\s/g, "-");
      const n = seen.get(slug) ?? 0;
      seen.set(slug, n + 1);
      anchors.add(n === 0 ? slug : `${slug}-${n}`);
    }
    for (const [, id] of line.matchAll(/<a (?:name|id)="([^"]+)"/g)) anchors.add(id as string);
  }
  return anchors;
}

describe("links between the docs", () => {
  it("every relative link and #anchor of README.md, BENCHMARKS.md and docs/*.md resolves", () => {
    const files = [
      "README.md",
      "BENCHMARKS.md",
      ...readdirSync(join(root, "docs"))
        .filter((name) => name.endsWith(".md"))
        .map((name) => `docs/${name}`),
    ];
    const broken: string[] = [];
    let checked = 0;
    for (const file of files) {
      let fenced = false;
      readFileSync(join(root, file), "utf8")
        .split("\n")
        .forEach((line, n) => {
          if (/^\s*```/.test(line)) fenced = !fenced;
          if (fenced) return;
          for (const [, target] of line.replace(/`[^`]*`/g, "").matchAll(/\]\(([^)\s]+)\)/g)) {
            if (/^[a-z][\w+.-]*:/i.test(target as string)) continue;
            checked++;
            const [path, anchor] = (target as string).split("#") as [string, string | undefined];
            const linked = path === "" ? file : join(dirname(file), path);
            const where = `${file}:${n + 1}: ${target}`;
            if (!existsSync(join(root, linked))) broken.push(`${where} (no such file)`);
            else if (anchor !== undefined && linked.endsWith(".md")) {
              const text = readFileSync(join(root, linked), "utf8");
              if (!anchorsOf(text).has(anchor)) broken.push(`${where} (no such heading)`);
            }
          }
        });
    }
    assert.ok(checked >= 100, `${checked} links checked`);
    assert.deepEqual(broken, []);
  });
});
