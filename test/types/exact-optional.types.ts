/**
 * Type tests under `exactOptionalPropertyTypes` (typechecked by
 * test/types/tsconfig.exact.json, which `npm run typecheck` runs; the main
 * tsconfig.json leaves this file out). Every option the package reads as
 * absent when it is undefined takes an explicit undefined too, so options
 * can be forwarded from a caller's own optional ones (`{ signal:
 * options.signal }`). A ContextVar's `default` does not: `{ default:
 * undefined }` is a default of undefined, which a ContextVar<string> must
 * not have. Only typechecked: nothing is called.
 */
import type { IncomingMessage } from "node:http";
import {
  type Context,
  ContextVar,
  type ContextVarOptions,
  createTask,
  TaskGroup,
  type TaskGroupOptions,
  type TaskOptions,
  timeout,
} from "contextvars";
import { Variable, type VariableOptions } from "contextvars/async-context";
import * as expressContext from "contextvars/express";
import { contextPlugin } from "contextvars/fastify";
import * as honoContext from "contextvars/hono";
import {
  type RequestContextOptions,
  type UpgradeContextOptions,
  withContext,
  withUpgradeContext,
} from "contextvars/http";
import * as koaContext from "contextvars/koa";
import { withSocketContext } from "contextvars/socket.io";
import {
  type ContextPoolOptions,
  type ContextRunOptions,
  contextPool,
  type OnUncloneable,
  Worker,
  type WorkerOptions,
} from "contextvars/worker";
import Fastify from "fastify";
import { Piscina } from "piscina";
import { Server as SocketIoServer } from "socket.io";

/** A caller's own options, each possibly undefined. */
interface Forwarded {
  name?: string;
  context?: Context;
  signal?: AbortSignal;
  transfer?: boolean;
  header?: string;
  echo?: boolean;
  trustHeader?: boolean;
  generateId?: (request: IncomingMessage) => string;
  seed?: (request: IncomingMessage) => void;
  onUncloneable?: OnUncloneable;
  defaultValue?: string;
}

export async function optionsForwardUndefined(o: Forwarded): Promise<void> {
  const task: TaskOptions = { name: o.name, context: o.context, signal: o.signal };
  createTask(() => 1, task);
  createTask(() => 1, { name: o.name, context: o.context, signal: o.signal });
  timeout(10, () => 1, { name: o.name, signal: o.signal });
  const group: TaskGroupOptions = { name: o.name, signal: o.signal };
  new TaskGroup(group).createTask(() => 1, { context: o.context });

  const varOptions: ContextVarOptions<string> = { transfer: o.transfer };
  new ContextVar<string>("user", varOptions);
  new ContextVar("count", { default: 0, transfer: o.transfer });
  const variable: VariableOptions<string> = { name: o.name, defaultValue: o.defaultValue };
  new Variable(variable);

  const request: RequestContextOptions<IncomingMessage> = {
    header: o.header,
    echo: o.echo,
    trustHeader: o.trustHeader,
    generateId: o.generateId,
    seed: o.seed,
  };
  withContext(() => {}, request);
  withContext(() => {}, { header: o.header, echo: o.echo, seed: o.seed });
  const upgrade: UpgradeContextOptions<IncomingMessage> = { header: o.header, echo: undefined };
  withUpgradeContext(() => {}, upgrade);
  expressContext.contextMiddleware({ header: o.header, trustHeader: o.trustHeader });
  honoContext.contextMiddleware({ header: o.header, echo: o.echo });
  koaContext.contextMiddleware({ header: o.header, echo: o.echo });
  withSocketContext(new SocketIoServer(), { header: o.header, echo: o.echo, seed: o.seed });
  await Fastify().register(contextPlugin, { header: o.header, echo: o.echo });

  const worker: WorkerOptions = { context: o.context, onUncloneable: o.onUncloneable };
  new Worker("/worker.js", worker);
  const poolOptions: ContextPoolOptions = { onUncloneable: o.onUncloneable };
  const pool = contextPool(new Piscina({ filename: "/job.js" }), poolOptions);
  const run: ContextRunOptions = { name: o.name, signal: o.signal, transferList: undefined };
  await pool.run(1, run);

  // A default of undefined is a default: it must be a T.
  // @ts-expect-error undefined is not a string
  new ContextVar<string>("user", { default: undefined });
  // @ts-expect-error nor a possibly-undefined value
  new ContextVar<string>("user", { default: o.defaultValue });
  new ContextVar<string | undefined>("user", { default: undefined });
  // @ts-expect-error echo may only be false (or absent) on an upgrade
  withUpgradeContext(() => {}, { echo: o.echo });
}
