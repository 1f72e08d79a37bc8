/**
 * TEST INFRASTRUCTURE: what kube-apiserver does to a custom resource against its
 * CRD's structural OpenAPI v3 schema, in the same order: prune unknown fields,
 * apply defaults, validate the schema, then run the x-kubernetes-validations
 * CEL rules (transition rules see `oldSelf` on update).
 */
import type { FieldError } from './errors.js'
import type { Json, JsonObject } from './patch.js'
import { isObject } from './patch.js'
import { evaluateRule, isTransitionRule, toCel } from './cel.js'

/** One x-kubernetes-validations entry. */
export interface ValidationRule {
  rule: string
  message?: string
  messageExpression?: string
  fieldPath?: string
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate'
}

/** The subset of apiextensions/v1 JSONSchemaProps that structural schemas use. */
export interface JSONSchemaProps {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean'
  format?: string
  description?: string
  nullable?: boolean
  default?: Json
  enum?: Json[]
  minimum?: number
  maximum?: number
  exclusiveMinimum?: boolean
  exclusiveMaximum?: boolean
  minLength?: number
  maxLength?: number
  pattern?: string
  minItems?: number
  maxItems?: number
  minProperties?: number
  maxProperties?: number
  required?: string[]
  properties?: Record<string, JSONSchemaProps>
  additionalProperties?: JSONSchemaProps | boolean
  items?: JSONSchemaProps
  anyOf?: JSONSchemaProps[]
  'x-kubernetes-preserve-unknown-fields'?: boolean
  'x-kubernetes-int-or-string'?: boolean
  'x-kubernetes-embedded-resource'?: boolean
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map'
  'x-kubernetes-list-map-keys'?: string[]
  'x-kubernetes-validations'?: ValidationRule[]
}

function childPath(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`
}

function describe(value: Json): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (Array.isArray(value)) return '"array"'
  if (isObject(value)) return '"object"'
  return String(value)
}

function keepsUnknown(schema: JSONSchemaProps): boolean {
  return schema['x-kubernetes-preserve-unknown-fields'] === true || schema.additionalProperties !== undefined
}

/**
 * Removes fields the schema does not declare (in place) and returns their paths,
 * which `fieldValidation=Strict` turns into errors. `root` keeps apiVersion,
 * kind and metadata, which every object has whatever its schema says.
 */
export function prune(schema: JSONSchemaProps, value: Json, path = '', root = true): string[] {
  const unknown: string[] = []
  if (Array.isArray(value) && schema.items) {
    value.forEach((item, i) => unknown.push(...prune(schema.items as JSONSchemaProps, item, `${path}[${i}]`, false)))
  }
  if (!isObject(value)) return unknown
  for (const key of Object.keys(value)) {
    const item = value[key] as Json
    if (root && (key === 'apiVersion' || key === 'kind' || key === 'metadata')) continue
    const propSchema = schema.properties?.[key]
    if (propSchema !== undefined) unknown.push(...prune(propSchema, item, childPath(path, key), false))
    else if (typeof schema.additionalProperties === 'object') {
      unknown.push(...prune(schema.additionalProperties, item, childPath(path, key), false))
    } else if (!keepsUnknown(schema)) {
      delete value[key]
      unknown.push(childPath(path, key))
    }
  }
  return unknown
}

/** Fills in defaults (in place) wherever the enclosing object exists. */
export function applyDefaults(schema: JSONSchemaProps, value: Json): void {
  if (Array.isArray(value) && schema.items) {
    for (const item of value) applyDefaults(schema.items, item)
    return
  }
  if (!isObject(value)) return
  for (const [key, propSchema] of Object.entries(schema.properties ?? {})) {
    if (value[key] === undefined && propSchema.default !== undefined) value[key] = structuredClone(propSchema.default)
    const item = value[key]
    if (item !== undefined) applyDefaults(propSchema, item)
  }
  if (typeof schema.additionalProperties === 'object') {
    for (const item of Object.values(value)) applyDefaults(schema.additionalProperties, item)
  }
}

function typeOk(schema: JSONSchemaProps, value: Json): boolean {
  if (schema['x-kubernetes-int-or-string']) return typeof value === 'string' || Number.isInteger(value)
  switch (schema.type) {
    case 'object':
      return isObject(value)
    case 'array':
      return Array.isArray(value)
    case 'string':
      return typeof value === 'string'
    case 'integer':
      return typeof value === 'number' && Number.isInteger(value)
    case 'number':
      return typeof value === 'number'
    case 'boolean':
      return typeof value === 'boolean'
    default:
      return true
  }
}

function checkNumber(schema: JSONSchemaProps, value: number, path: string, errors: FieldError[]): void {
  const bad = (text: string): void => {
    errors.push({ type: 'FieldValueInvalid', field: path, text: `Invalid value: ${value}: ${path} in body ${text}` })
  }
  if (schema.minimum !== undefined) {
    if (schema.exclusiveMinimum && value <= schema.minimum) bad(`should be greater than ${schema.minimum}`)
    else if (value < schema.minimum) bad(`should be greater than or equal to ${schema.minimum}`)
  }
  if (schema.maximum !== undefined) {
    if (schema.exclusiveMaximum && value >= schema.maximum) bad(`should be less than ${schema.maximum}`)
    else if (value > schema.maximum) bad(`should be less than or equal to ${schema.maximum}`)
  }
}

function checkString(schema: JSONSchemaProps, value: string, path: string, errors: FieldError[]): void {
  const length = [...value].length
  if (schema.maxLength !== undefined && length > schema.maxLength) {
    errors.push({ type: 'FieldValueTooLong', field: path, text: `Too long: may not be more than ${schema.maxLength} bytes` })
  }
  if (schema.minLength !== undefined && length < schema.minLength) {
    const text = `Invalid value: ${JSON.stringify(value)}: ${path} in body should be at least ${schema.minLength} chars long`
    errors.push({ type: 'FieldValueInvalid', field: path, text })
  }
  if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) {
    const text = `Invalid value: ${JSON.stringify(value)}: ${path} in body should match '${schema.pattern}'`
    errors.push({ type: 'FieldValueInvalid', field: path, text })
  }
}

function checkArray(schema: JSONSchemaProps, value: Json[], path: string, errors: FieldError[]): void {
  if (schema.maxItems !== undefined && value.length > schema.maxItems) {
    errors.push({ type: 'FieldValueTooMany', field: path, text: `Too many: ${value.length}: must have at most ${schema.maxItems} items` })
  }
  if (schema.minItems !== undefined && value.length < schema.minItems) {
    errors.push({ type: 'FieldValueInvalid', field: path, text: `Invalid value: "array": ${path} in body should have at least ${schema.minItems} items` })
  }
  const keys = schema['x-kubernetes-list-map-keys']
  if (schema['x-kubernetes-list-type'] === 'map' && keys !== undefined) {
    const seen = new Set<string>()
    value.forEach((item, i) => {
      const id = JSON.stringify(keys.map((k) => (isObject(item) ? item[k] : undefined)))
      if (seen.has(id)) errors.push({ type: 'FieldValueDuplicate', field: `${path}[${i}]`, text: `Duplicate value: ${id}` })
      seen.add(id)
    })
  }
  value.forEach((item, i) => schema.items && validateSchema(schema.items, item, `${path}[${i}]`, errors))
}

function checkObject(schema: JSONSchemaProps, value: JsonObject, path: string, errors: FieldError[]): void {
  for (const key of schema.required ?? []) {
    if (value[key] === undefined) errors.push({ type: 'FieldValueRequired', field: childPath(path, key), text: 'Required value' })
  }
  const count = Object.keys(value).length
  if (schema.maxProperties !== undefined && count > schema.maxProperties) {
    errors.push({ type: 'FieldValueTooMany', field: path, text: `Too many: ${count}: must have at most ${schema.maxProperties} items` })
  }
  if (schema.minProperties !== undefined && count < schema.minProperties) {
    errors.push({ type: 'FieldValueInvalid', field: path, text: `Invalid value: ${count}: ${path} in body should have at least ${schema.minProperties} properties` })
  }
  for (const [key, item] of Object.entries(value)) {
    const propSchema = schema.properties?.[key] ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined)
    if (propSchema !== undefined) validateSchema(propSchema, item, childPath(path, key), errors)
  }
}

/** Checks types, enums, bounds, lengths, patterns and required fields; appends to `errors`. */
export function validateSchema(schema: JSONSchemaProps, value: Json, path: string, errors: FieldError[]): void {
  if (value === null) {
    if (!schema.nullable) errors.push({ type: 'FieldValueTypeInvalid', field: path, text: `Invalid value: "null": ${path} in body must be of type ${schema.type ?? 'object'}: "null"` })
    return
  }
  if (!typeOk(schema, value)) {
    const want = schema['x-kubernetes-int-or-string'] ? 'integer,string' : schema.type
    const got = Array.isArray(value) ? 'array' : typeof value === 'number' ? (Number.isInteger(value) ? 'integer' : 'number') : typeof value
    errors.push({ type: 'FieldValueTypeInvalid', field: path, text: `Invalid value: "${got}": ${path} in body must be of type ${want}: "${got}"` })
    return
  }
  if (schema.enum !== undefined && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    const supported = schema.enum.map((e) => JSON.stringify(e)).join(', ')
    errors.push({ type: 'FieldValueNotSupported', field: path, text: `Unsupported value: ${describe(value)}: supported values: ${supported}` })
  }
  if (typeof value === 'number') checkNumber(schema, value, path, errors)
  else if (typeof value === 'string') checkString(schema, value, path, errors)
  else if (Array.isArray(value)) checkArray(schema, value, path, errors)
  else if (isObject(value)) checkObject(schema, value, path, errors)
}

function ruleError(rule: ValidationRule, schema: JSONSchemaProps, path: string, message: string): FieldError {
  const field = rule.fieldPath ? `${path}${rule.fieldPath.startsWith('.') || rule.fieldPath.startsWith('[') ? '' : '.'}${rule.fieldPath}` : path
  switch (rule.reason) {
    case 'FieldValueForbidden':
      return { type: rule.reason, field, text: `Forbidden: ${message}` }
    case 'FieldValueRequired':
      return { type: rule.reason, field, text: `Required value: ${message}` }
    case 'FieldValueDuplicate':
      return { type: rule.reason, field, text: `Duplicate value: "${schema.type ?? 'object'}": ${message}` }
    default:
      return { type: 'FieldValueInvalid', field, text: `Invalid value: "${schema.type ?? 'object'}": ${message}` }
  }
}

/** The old element matching `item` in a list, for transition rules inside lists. */
function correlate(schema: JSONSchemaProps, item: Json, oldList: Json | undefined): Json | undefined {
  const keys = schema['x-kubernetes-list-map-keys']
  if (!Array.isArray(oldList) || schema['x-kubernetes-list-type'] !== 'map' || keys === undefined || !isObject(item)) return undefined
  return oldList.find((old) => isObject(old) && keys.every((k) => JSON.stringify(old[k]) === JSON.stringify(item[k])))
}

/** Runs every CEL rule under `schema` for `value`; `old` is the stored value on update. */
export function validateRules(schema: JSONSchemaProps, value: Json, old: Json | undefined, path: string, errors: FieldError[]): void {
  for (const rule of schema['x-kubernetes-validations'] ?? []) {
    if (isTransitionRule(rule) && old === undefined) continue
    const message = evaluateRule(rule, toCel(schema, value), old === undefined ? undefined : toCel(schema, old))
    if (message !== undefined) errors.push(ruleError(rule, schema, path, message))
  }
  if (Array.isArray(value) && schema.items) {
    value.forEach((item, i) => validateRules(schema.items as JSONSchemaProps, item, correlate(schema, item, old), `${path}[${i}]`, errors))
  } else if (isObject(value)) {
    const oldObject = isObject(old) ? old : undefined
    for (const [key, item] of Object.entries(value)) {
      const propSchema = schema.properties?.[key] ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined)
      if (propSchema !== undefined) validateRules(propSchema, item, oldObject?.[key], childPath(path, key), errors)
    }
  }
}

/** Every rule in the schema, for compiling them when a CRD is created. */
export function collectRules(schema: JSONSchemaProps, path = ''): Array<{ path: string; rule: ValidationRule }> {
  const found = (schema['x-kubernetes-validations'] ?? []).map((rule) => ({ path, rule }))
  for (const [key, prop] of Object.entries(schema.properties ?? {})) found.push(...collectRules(prop, childPath(path, key)))
  if (typeof schema.additionalProperties === 'object') found.push(...collectRules(schema.additionalProperties, path))
  if (schema.items) found.push(...collectRules(schema.items, `${path}[*]`))
  return found
}
