/**
 * TEST INFRASTRUCTURE: x-kubernetes-validations (CEL) evaluation for CRD schemas,
 * with `self` and the transition variable `oldSelf`, through @marcbachmann/cel-js.
 * Values are converted the way the apiserver types them: schema `integer` is a
 * CEL int (a BigInt here), `number` a double.
 */
import { parse, type ParseResult } from '@marcbachmann/cel-js'
import type { Json } from './patch.js'
import { isObject } from './patch.js'
import type { JSONSchemaProps, ValidationRule } from './schema.js'

const compiled = new Map<string, ParseResult>()

/** Compiles a rule once; throws the library's ParseError on bad syntax. */
export function compileRule(expression: string): ParseResult {
  let program = compiled.get(expression)
  if (program === undefined) {
    program = parse(expression)
    compiled.set(expression, program)
  }
  return program
}

/** A rule that reads `oldSelf` runs only on update, when the old value exists. */
export function isTransitionRule(rule: ValidationRule): boolean {
  return /\boldSelf\b/.test(rule.rule)
}

/** Converts a JSON value to the CEL value its schema gives it. */
export function toCel(schema: JSONSchemaProps | undefined, value: Json): unknown {
  if (value === null) return null
  if (typeof value === 'number') {
    const integral = schema?.type === 'integer' || ((schema === undefined || schema['x-kubernetes-int-or-string']) && Number.isInteger(value))
    return integral && Number.isInteger(value) ? BigInt(value) : value
  }
  if (Array.isArray(value)) return value.map((item) => toCel(schema?.items, item))
  if (isObject(value)) {
    const out: Record<string, unknown> = {}
    for (const [key, item] of Object.entries(value)) {
      const additional = typeof schema?.additionalProperties === 'object' ? schema.additionalProperties : undefined
      out[key] = toCel(schema?.properties?.[key] ?? additional, item)
    }
    return out
  }
  return value
}

/** The outcome of one rule: undefined when it holds, else the message to report. */
export function evaluateRule(rule: ValidationRule, self: unknown, oldSelf: unknown): string | undefined {
  const context: Record<string, unknown> = { self }
  if (oldSelf !== undefined) context.oldSelf = oldSelf
  let result: unknown
  try {
    result = compileRule(rule.rule)(context)
  } catch (err) {
    return `${rule.message ?? `failed rule: ${rule.rule}`} (evaluation error: ${(err as Error).message})`
  }
  if (typeof result !== 'boolean') return `rule did not evaluate to a boolean: ${rule.rule}`
  if (result) return undefined
  if (rule.messageExpression !== undefined) {
    try {
      const message: unknown = compileRule(rule.messageExpression)(context)
      if (typeof message === 'string' && message.length > 0) return message
    } catch {
      // The apiserver falls back to `message` when messageExpression fails.
    }
  }
  return rule.message ?? `failed rule: ${rule.rule}`
}
