import { createAsyncLocalStorageCarrier } from "./async-local-storage.ts";
import type { Carrier } from "./carrier.ts";

/**
 * The carrier, chosen once at import so the hot path never asks which one is
 * in use (as Node picks its AsyncLocalStorage backend at load).
 */
export const carrier: Carrier = createAsyncLocalStorageCarrier();
