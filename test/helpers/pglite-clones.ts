/**
 * A PGlite per pooled connection, for tests that need two transactions open
 * at once. PGlite is one Postgres session: pglite-socket takes several
 * connections but runs one transaction at a time, holding every other
 * connection's queries until it ends (and a transaction opened inside
 * another waits for it forever). So each database here is a clone of the
 * first, behind a pglite-socket server of its own on 127.0.0.1, and
 * `Client` connects each pg connection to a database no other connection
 * holds. Each database has a table `who` naming it, which `WHOAMI` reads,
 * and a table `entries (id, request, note)`.
 */
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";
import pg from "pg";

/** The database and transaction a query runs in, as `a:742`: select it as `id`. */
export const WHOAMI = "select (select name from who) || ':' || txid_current()::text as id";

export interface PgliteClones {
  /** The clones, in the order of the names given. */
  readonly databases: readonly PGlite[];
  /** pg's Client, each one connected to a database no other connection holds. */
  readonly Client: typeof pg.Client;
  /** The server's version as `major.minor.0`. */
  readonly version: string;
  /** Every note a request wrote to `entries`, in whichever database it went to. */
  notesOf(request: string): Promise<string[]>;
  /** Stops the servers and closes the databases; close the pool first. */
  close(): Promise<void>;
}

/** One database per name, each with `who`, `entries` and then `schema`. */
export async function pgliteClones(names: readonly string[], schema = ""): Promise<PgliteClones> {
  const first = await PGlite.create();
  await first.exec(`
    create table who (name text not null);
    insert into who values ('${names[0]}');
    create table entries (id serial primary key, request text not null, note text not null);
    ${schema}
  `);
  const databases: PGlite[] = [first];
  for (const name of names.slice(1)) {
    const copy = (await first.clone()) as PGlite;
    await copy.exec(`update who set name = '${name}'`);
    databases.push(copy);
  }
  const servers: PGLiteSocketServer[] = [];
  const freePorts: number[] = [];
  for (const db of databases) {
    const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: 1 });
    await server.start();
    servers.push(server);
    freePorts.push(Number(server.getServerConn().split(":").at(-1)));
  }
  class OwnDatabaseClient extends pg.Client {
    constructor(config: pg.ClientConfig) {
      const port = freePorts.shift();
      if (port === undefined) throw new Error("more connections than databases");
      super({ ...config, port });
      this.once("end", () => freePorts.push(port));
    }
  }
  const { rows } = await first.query<{ server_version: string }>("show server_version");
  const [major, minor = "0"] = String(rows[0]?.server_version).split(".");
  return {
    databases,
    Client: OwnDatabaseClient,
    version: `${major}.${minor}.0`,
    async notesOf(request) {
      const notes: string[] = [];
      for (const db of databases) {
        const found = await db.query<{ note: string }>(
          "select note from entries where request = $1 order by id",
          [request],
        );
        notes.push(...found.rows.map((r) => r.note));
      }
      return notes;
    },
    async close() {
      for (const server of servers) await server.stop();
      for (const db of databases) await db.close();
    },
  };
}
