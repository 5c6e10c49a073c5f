/**
 * Token: what `set` returns and `reset` takes; `using _ = v.set(x)`. Ported
 * from CPython's Lib/test/test_context.py (ContextTest) where a test is one.
 * The error paths of reset are in errors.test.ts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { inspect } from "node:util";
import {
  ContextVar,
  copyContext,
  gather,
  MISSING,
  Token,
  TokenMismatchError,
  TokenUsedError,
} from "contextvars";
import { itFromEveryState } from "../helpers/starting-states.ts";

describe("Token", () => {
  it("Token.MISSING is the exported MISSING, read-only", () => {
    assert.equal(Token.MISSING, MISSING);
    assert.equal(typeof MISSING, "symbol");
    assert.throws(() => {
      (Token as unknown as { MISSING: unknown }).MISSING = 1;
    }, TypeError);
    assert.equal(Token.MISSING, MISSING);
    assert.throws(() => {
      delete (Token as unknown as { MISSING?: unknown }).MISSING;
    }, TypeError);
    assert.equal(Token.MISSING, MISSING);
  });

  itFromEveryState("test_context_getset_1: set, oldValue, reset, used", () => {
    const c = new ContextVar<number | string>("c");
    const t0 = c.set(42);
    assert.equal(t0.oldValue, MISSING);
    assert.equal(t0.oldValue, Token.MISSING);
    assert.equal(t0.var, c);
    assert.equal(t0.used, false);

    const t = c.set("spam");
    assert.equal(c.get(), "spam");
    assert.equal(t.oldValue, 42);
    c.reset(t);
    assert.equal(t.used, true);
    assert.equal(c.get(), 42);

    c.set("spam2");
    assert.throws(() => c.reset(t), TokenUsedError);
    assert.equal(c.get(), "spam2");

    const ctx1 = copyContext();
    c.reset(t0);
    assert.equal(t0.used, true);
    assert.throws(() => c.reset(t0), TokenUsedError);
    assert.equal(c.get(undefined), undefined);
    assert.equal(copyContext().has(c), false);
    assert.equal(ctx1.get(c), "spam2");
  });

  itFromEveryState("reset restores the token's old value, not the previous set", () => {
    const c = new ContextVar<number>("c");
    c.set(1);
    const t = c.set(2);
    c.set(3);
    c.reset(t);
    assert.equal(c.get(), 1);
  });

  itFromEveryState(
    "reset after later sets restores the old value in the Context itself, not only in get()",
    () => {
      const c = new ContextVar<number>("c");
      c.set(1);
      const t = c.set(2);
      c.set(3);
      c.reset(t);
      assert.equal(copyContext().get(c), 1);
      assert.equal(c.get(), 1);
    },
  );

  itFromEveryState("reset keeps what other vars did since the set", () => {
    const a = new ContextVar<number>("a");
    const b = new ContextVar<number>("b");
    const ta = a.set(1);
    const tb = b.set(2);
    a.reset(ta);
    assert.equal(a.get(undefined), undefined);
    assert.equal(b.get(), 2);
    b.reset(tb);
    const ta2 = a.set(3);
    const tb2 = b.set(4);
    b.reset(tb2);
    a.reset(ta2);
    assert.equal(copyContext().has(a), false);
    assert.equal(copyContext().has(b), false);
  });

  itFromEveryState("set(undefined) makes oldValue undefined for the next token", () => {
    const c = new ContextVar<number | undefined>("c");
    c.set(undefined);
    const t = c.set(1);
    assert.equal(t.oldValue, undefined);
    c.reset(t);
    assert.equal(copyContext().has(c), true);
    assert.equal(c.get(2), undefined);
  });

  itFromEveryState("a token resets across awaits in the Context that made it", async () => {
    const c = new ContextVar<string>("c", { default: "default" });
    const t = c.set("value");
    await sleep(1);
    assert.equal(c.get(), "value");
    c.reset(t);
    await sleep(1);
    assert.equal(c.get(), "default");
  });

  itFromEveryState(
    "a var whose value is MISSING itself: reset restores that value, as CPython restores Token.MISSING",
    () => {
      // CPython tells "no value" (tok_oldval NULL) from the value Token.MISSING;
      // old_value reports both as MISSING, and reset puts the value back.
      const c = new ContextVar<unknown>("c", { default: "default" });
      for (const moveOn of [false, true]) {
        c.set(MISSING);
        const t = c.set(1);
        assert.equal(t.oldValue, MISSING);
        // Another set first, so that reset cannot put the earlier mapping back as it was.
        if (moveOn) c.set(2);
        c.reset(t);
        const ctx = copyContext();
        assert.equal(ctx.has(c), true, `moveOn=${moveOn}`);
        assert.equal(ctx.get(c), MISSING, `moveOn=${moveOn}`);
        assert.equal(c.get(), MISSING, `moveOn=${moveOn}`);
      }
    },
  );

  it("new Token() from user code throws TypeError", () => {
    const AnyToken = Token as unknown as new (...args: unknown[]) => Token<unknown>;
    assert.throws(() => new AnyToken(), TypeError);
    assert.throws(() => new AnyToken(Symbol("contextvars.token")), TypeError);
  });

  it("used is read-only", () => {
    const c = new ContextVar<number>("c");
    const t = c.set(1);
    assert.throws(() => {
      (t as { used: boolean }).used = true;
    }, TypeError);
    assert.equal(t.used, false);
    c.reset(t);
  });

  it("var and oldValue are read-only, as Python's token.var and token.old_value", () => {
    const c = new ContextVar<number>("c");
    const other = new ContextVar<number>("other");
    const t = c.set(1);
    const writable = t as { var: ContextVar<number>; oldValue: unknown };
    assert.throws(() => {
      writable.var = other;
    }, TypeError);
    assert.throws(() => {
      writable.oldValue = 5;
    }, TypeError);
    assert.equal(t.var, c);
    assert.equal(t.oldValue, MISSING);
  });

  it("reset reads the token's own state: own properties defined on it change nothing", () => {
    const c = new ContextVar<string>("c", { default: "default" });
    const other = new ContextVar<string>("other");
    // A shadowed `used`: the token still resets only once (CPython's RuntimeError).
    const once = c.set("a");
    Object.defineProperty(once, "used", { get: () => false });
    c.reset(once);
    c.set("b");
    assert.throws(() => c.reset(once), TokenUsedError);
    assert.equal(c.get(), "b");
    // A shadowed `var`: reset through another var is still refused.
    const t = c.set("c");
    Object.defineProperty(t, "var", { value: other });
    assert.throws(() => other.reset(t), TokenMismatchError);
    // A shadowed `oldValue`: the value restored is the one the var had.
    Object.defineProperty(t, "oldValue", { value: "forged" });
    c.reset(t);
    assert.equal(c.get(), "b");
    // A throwing `oldValue` getter cannot interrupt a reset halfway.
    const u = c.set("d");
    Object.defineProperty(u, "oldValue", {
      get() {
        throw new Error("getter");
      },
    });
    c.reset(u);
    assert.equal(c.get(), "b");
    // using, through Symbol.dispose, resets the var that made the token.
    {
      using shadowed = c.set("e");
      Object.defineProperty(shadowed, "var", { value: other });
      assert.equal(c.get(), "e");
    }
    assert.equal(c.get(), "b");
  });
});

describe("Token with using", () => {
  itFromEveryState("using _ = v.set(x) restores the old value at scope exit", () => {
    const c = new ContextVar<string>("c", { default: "default" });
    {
      using _outer = c.set("outer");
      assert.equal(c.get(), "outer");
      {
        using _inner = c.set("inner");
        assert.equal(c.get(), "inner");
      }
      assert.equal(c.get(), "outer");
    }
    assert.equal(c.get(), "default");
    assert.equal(copyContext().has(c), false);
  });

  itFromEveryState("using restores when the block throws", () => {
    const c = new ContextVar<string>("c", { default: "default" });
    const boom = new Error("boom");
    assert.throws(
      () => {
        using _ = c.set("inside");
        throw boom;
      },
      (err) => err === boom,
    );
    assert.equal(c.get(), "default");
  });

  itFromEveryState("using in an async function restores after its awaits", async () => {
    const c = new ContextVar<string>("c", { default: "default" });
    const inner = async () => {
      using _ = c.set("inside");
      await sleep(1);
      return c.get();
    };
    assert.equal(await inner(), "inside");
    assert.equal(c.get(), "default");
  });

  itFromEveryState("[Symbol.dispose] is reset: a used token cannot dispose again", () => {
    const c = new ContextVar<number>("c");
    const t = c.set(1);
    t[Symbol.dispose]();
    assert.equal(t.used, true);
    assert.equal(c.get(undefined), undefined);
    assert.throws(() => t[Symbol.dispose](), TokenUsedError);
  });

  itFromEveryState("[Symbol.dispose] in another Context throws and leaves the token", () => {
    const c = new ContextVar<number>("c");
    const t = c.set(1);
    assert.throws(() => copyContext().run(() => t[Symbol.dispose]()), TokenMismatchError);
    assert.equal(t.used, false);
    t[Symbol.dispose]();
    assert.equal(c.get(undefined), undefined);
  });
});

describe("Token, concurrently", () => {
  itFromEveryState(
    "siblings set and reset on equal timers; each restores only its own",
    async () => {
      const c = new ContextVar<string>("c", { default: "default" });
      c.set("outer");
      const worker = (name: string) => async () => {
        const t = c.set(name);
        await sleep(2);
        const seen = c.get();
        c.reset(t);
        await sleep(2);
        return [seen, c.get()];
      };
      const results = await gather(worker("a"), worker("b"), worker("c"));
      assert.deepEqual(results, [
        ["a", "outer"],
        ["b", "outer"],
        ["c", "outer"],
      ]);
      assert.equal(c.get(), "outer");
    },
  );
});

describe("Token reads well", () => {
  it("test_token_repr_1: toString names the var; ' used' appears after reset", () => {
    const c = new ContextVar<number>("a");
    const t = c.set(1);
    assert.equal(String(t), '<Token var=ContextVar("a")>');
    assert.ok(String(t).includes(String(c)));
    assert.doesNotMatch(String(t), / used /);
    c.reset(t);
    assert.equal(String(t), '<Token used var=ContextVar("a")>');
    assert.match(String(t), / used /);
  });

  it("inspect shows a token nested beyond the depth short, and one at the depth in full", () => {
    const c = new ContextVar<number>("a");
    const t = c.set(1);
    assert.equal(
      inspect({ x: { y: { z: t } } }),
      '{ x: { y: { z: [<Token var=ContextVar("a")>] } } }',
    );
    assert.equal(
      inspect({ x: { y: t } }, { breakLength: Number.POSITIVE_INFINITY }),
      '{ x: { y: Token { var: ContextVar("a"), oldValue: MISSING, used: false } } }',
    );
    c.reset(t);
  });

  it("test_context_var_repr_1: Symbol.toStringTag and inspect show var, oldValue and used", () => {
    const c = new ContextVar<number>("a");
    const t0 = c.set(1);
    const t1 = c.set(2);
    assert.equal(Object.prototype.toString.call(t0), "[object Token]");
    assert.equal(inspect(t0), 'Token { var: ContextVar("a"), oldValue: MISSING, used: false }');
    assert.equal(inspect(t1), 'Token { var: ContextVar("a"), oldValue: 1, used: false }');
    c.reset(t1);
    assert.equal(inspect(t1), 'Token { var: ContextVar("a"), oldValue: 1, used: true }');
    c.reset(t0);
  });
});
