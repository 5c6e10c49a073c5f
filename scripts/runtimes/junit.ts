/**
 * Reads the JUnit XML that each runtime's test runner writes (Node's
 * `--test-reporter=junit`, `bun test --reporter=junit`, `deno test
 * --junit-path`) into one shape: every leaf test with its full name
 * (`suite > inner suite > test`) and its outcome, so runs on different
 * runtimes and in both AsyncContextFrame modes can be compared test by test.
 *
 * The three differ in how they nest: Node and Bun nest `<testsuite>` per
 * `describe` (Bun adds one per file on top), Deno writes flat testcases
 * whose names already hold the path, including one for each `describe`
 * itself. So names are built from the suites, and a testcase is kept only
 * if no other testcase lies below it.
 */

export type Outcome = "pass" | "fail" | "skip";

export interface TestResult {
  readonly name: string;
  readonly outcome: Outcome;
  /** The failure's message, for the report. */
  readonly message?: string;
}

export type Dialect = "node" | "bun" | "deno";

const ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};

// Twice: Node's reporter escapes a test name's quotes and then the `&` of those escapes.
function decodeEntities(text: string): string {
  return decodeOnce(decodeOnce(text));
}

function decodeOnce(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (whole, code: string) => {
    if (code[0] === "#") {
      const n =
        code[1] === "x" || code[1] === "X"
          ? Number.parseInt(code.slice(2), 16)
          : Number(code.slice(1));
      return Number.isFinite(n) ? String.fromCodePoint(n) : whole;
    }
    return ENTITIES[code] ?? whole;
  });
}

function attributes(source: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const m of source.matchAll(/([\w:-]+)="([^"]*)"/g)) {
    found.set(m[1] as string, decodeEntities(m[2] as string));
  }
  return found;
}

interface OpenCase {
  name: string;
  outcome: Outcome;
  message: string | undefined;
}

/** Every leaf test in `xml`, in document order. */
export function parseJUnit(xml: string, dialect: Dialect): TestResult[] {
  const suites: string[] = [];
  const cases: TestResult[] = [];
  let open: OpenCase | undefined;
  const close = () => {
    if (open === undefined) return;
    cases.push(
      open.message === undefined
        ? { name: open.name, outcome: open.outcome }
        : { name: open.name, outcome: open.outcome, message: open.message },
    );
    open = undefined;
  };
  const tags = /<(\/?)(testsuite|testcase|failure|error|skipped)\b((?:[^>"]|"[^"]*")*?)(\/?)>/g;
  for (const m of xml.matchAll(tags)) {
    const [, closing, tag, rest, selfClosing] = m as unknown as [
      string,
      string,
      string,
      string,
      string,
    ];
    if (tag === "testsuite") {
      if (closing) suites.pop();
      else if (!selfClosing) suites.push(attributes(rest).get("name") ?? "");
      continue;
    }
    if (tag === "testcase") {
      if (closing) {
        close();
        continue;
      }
      close();
      const own = attributes(rest).get("name") ?? "";
      // Bun's outermost suite is the file; Deno's suites are files and its internals.
      const path = dialect === "node" ? suites : dialect === "bun" ? suites.slice(1) : [];
      open = { name: [...path, own].join(" > "), outcome: "pass", message: undefined };
      if (selfClosing) close();
      continue;
    }
    if (open === undefined || closing) continue;
    // A todo test may fail: Node writes both <skipped type="todo"> and <failure>; skip wins.
    if (tag === "skipped") open.outcome = "skip";
    else if (open.outcome !== "skip") {
      open.outcome = "fail";
      open.message = attributes(rest).get("message") ?? tag;
    }
  }
  close();
  // Keep leaves only: Deno lists each describe as a testcase above its tests.
  const names = cases.map((c) => c.name);
  return cases.filter((c) => !names.some((n) => n.startsWith(`${c.name} > `)));
}
