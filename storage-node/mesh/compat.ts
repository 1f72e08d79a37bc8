/**
 * js-libp2p 2.x (through mortice → it-queue) calls `Promise.withResolvers`, which
 * Node 22 has and Node 20 lacks. Cairn supports both, so the mesh fills in that
 * one standard function, with the standard's semantics, only where it is
 * missing. Called before the first libp2p node is created; nothing else is
 * patched. Remove when Node 20 support ends (ADR 0019).
 */

interface Resolvers<T> {
  promise: Promise<T>
  resolve: (value: T | PromiseLike<T>) => void
  reject: (reason?: unknown) => void
}

type PromiseWithResolversCtor = PromiseConstructor & { withResolvers?: <T>() => Resolvers<T> }

/** Installs `Promise.withResolvers` when the runtime does not have it; idempotent. */
export function ensurePromiseWithResolvers(): void {
  const ctor = Promise as PromiseWithResolversCtor
  if (typeof ctor.withResolvers === 'function') return
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function withResolvers<T>(this: PromiseConstructor): Resolvers<T> {
      let resolve!: Resolvers<T>['resolve']
      let reject!: Resolvers<T>['reject']
      const promise = new this<T>((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    },
  })
}
