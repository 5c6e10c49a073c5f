/**
 * One benchmark server, in its own process: `server.ts <framework> <mode>`.
 * Tells the parent its port, then answers each "mark" message with the
 * process's CPU time so far (process.cpuUsage, user + system, µs): the
 * parent takes the difference between two marks around a load run.
 */
import { FRAMEWORKS, type Framework, type Mode, start } from "./apps.ts";

const [framework, mode] = process.argv.slice(2) as [Framework, Mode];
if (!FRAMEWORKS.includes(framework)) throw new Error(`unknown framework ${framework}`);
if (process.send === undefined) throw new Error("run me through bench/http/run.ts");
// The runner gone (killed, or crashed before its finally), the channel closes:
// leave with it, rather than listen on loopback for good with nobody to stop us.
process.on("disconnect", () => process.exit(0));

const port = await start(framework, mode);
process.on("message", (message) => {
  if (message === "mark") {
    const { user, system } = process.cpuUsage();
    process.send?.({ cpu: user + system });
  } else if (message === "exit") {
    process.exit(0);
  }
});
process.send({ port });
