/**
 * The numeric `--name value` option of a bench runner's command line, or `fallback`.
 * @throws {Error} if the value is missing, not a positive number, or not whole where `whole`
 *   (a NaN ran no rounds, or bursts of no time, and printed an empty or NaN report).
 */
export function option(name: string, fallback: number, { whole = false } = {}): number {
  const at = process.argv.indexOf(`--${name}`);
  if (at === -1) return fallback;
  const text = process.argv[at + 1];
  const value = Number(text);
  if (
    text === undefined ||
    text.trim() === "" ||
    !(value > 0) ||
    (whole && !Number.isInteger(value))
  ) {
    const got = text === undefined ? "nothing" : `"${text}"`;
    throw new Error(`--${name} takes a positive ${whole ? "whole number" : "number"}, got ${got}`);
  }
  return value;
}

/**
 * The comma-separated `--name a,b` option, or undefined when it is not given.
 * @throws {Error} if a name is not one of `allowed` (an unknown name was dropped,
 *   and a runner given only unknown names measured nothing).
 */
export function names<T extends string>(name: string, allowed: readonly T[]): T[] | undefined {
  const at = process.argv.indexOf(`--${name}`);
  if (at === -1) return undefined;
  const given = (process.argv[at + 1] ?? "").split(",");
  const unknown = given.filter((x) => !(allowed as readonly string[]).includes(x));
  if (unknown.length > 0) {
    throw new Error(
      `--${name}: no ${unknown.map((x) => `"${x}"`).join(", ")}; choose from ${allowed.join(",")}`,
    );
  }
  return given as T[];
}

/**
 * Checks the command line: `--help` (or `-h`) prints `usage` and exits; each
 * other argument must be one of `known` followed by its value.
 * @throws {Error} naming an argument that is not an option of the runner (it
 *   was ignored, so a mistyped option, or --help, ran the whole benchmark).
 */
export function checkArguments(usage: string, known: readonly string[]): void {
  const args = process.argv.slice(2);
  if (args.includes("--help") || args.includes("-h")) {
    console.log(usage);
    process.exit(0);
  }
  for (let i = 0; i < args.length; i += 2) {
    const flag = args[i] as string;
    if (!flag.startsWith("--") || !known.includes(flag.slice(2))) {
      throw new Error(`no option "${flag}"\n${usage}`);
    }
  }
}
