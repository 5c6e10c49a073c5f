import { carrier } from "../carrier/select.ts";
import { Context, copyOf } from "./context.ts";

// A module-local alias: an imported binding is read through the exporting
// module's cell, with a check that it has been initialised, on every call.
const slot = carrier;
const copyContextOf = copyOf;

/**
 * The root Context: current wherever no run is entered. One per thread, since
 * each worker thread loads its own copy of this module.
 */
export const rootContext: Context = new Context();

/** The current Context (the cell itself, not a copy). Internal. */
export function currentContext(): Context {
  return slot.getStore() ?? rootContext;
}

/**
 * A copy of the current Context, in O(1) whatever the number of vars: later
 * sets in either one are not seen by the other (Python's copy_context()).
 *
 * @example
 * const snapshot = copyContext();
 * setTimeout(() => snapshot.run(() => log(user.get())), 10);
 */
export function copyContext(): Context {
  return copyContextOf(slot.getStore() ?? rootContext);
}
