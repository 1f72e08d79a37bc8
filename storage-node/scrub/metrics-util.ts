import { Counter, Gauge, type Registry } from 'prom-client'

/**
 * The counter named `name` on `registry`, created on first use. A component
 * restarted in the same process (tests, `cairn dev`) re-attaches to its
 * metrics instead of failing on a duplicate registration.
 */
export function counterOn<L extends string = string>(registry: Registry, name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
  const existing = registry.getSingleMetric(name)
  if (existing !== undefined) return existing as Counter<L>
  return new Counter<L>({ name, help, labelNames, registers: [registry] })
}

/** The gauge named `name` on `registry`, created on first use (see {@link counterOn}). */
export function gaugeOn<L extends string = string>(registry: Registry, name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
  const existing = registry.getSingleMetric(name)
  if (existing !== undefined) return existing as Gauge<L>
  return new Gauge<L>({ name, help, labelNames, registers: [registry] })
}
