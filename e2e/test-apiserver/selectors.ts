/**
 * TEST INFRASTRUCTURE: label and field selectors with kube-apiserver's grammar
 * (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`), so list and
 * watch filter exactly what a real cluster would return.
 */
import { badRequest } from './errors.js'

type Requirement =
  | { op: 'eq' | 'neq'; key: string; value: string }
  | { op: 'in' | 'notin'; key: string; values: string[] }
  | { op: 'exists' | 'notexists'; key: string }

/** A parsed selector; `matches` takes the object's labels (or field values). */
export interface Selector {
  readonly empty: boolean
  matches(values: Record<string, string | undefined>): boolean
}

/** Splits on commas that are not inside parentheses. */
function splitTerms(text: string): string[] {
  const terms: string[] = []
  let depth = 0
  let start = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '(') depth++
    else if (c === ')') depth--
    else if (c === ',' && depth === 0) {
      terms.push(text.slice(start, i))
      start = i + 1
    }
  }
  terms.push(text.slice(start))
  return terms.map((t) => t.trim()).filter((t) => t.length > 0)
}

const keyPattern = /^([a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?\/)?[a-z0-9A-Z]([-a-z0-9A-Z_.]*[a-z0-9A-Z])?$/
const valuePattern = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/

function checkKey(key: string, what: string): string {
  if (!keyPattern.test(key)) throw badRequest(`unable to parse requirement: invalid ${what} key: "${key}"`)
  return key
}

function checkValue(value: string): string {
  if (value.length > 63 || !valuePattern.test(value)) throw badRequest(`unable to parse requirement: invalid value: "${value}"`)
  return value
}

function parseTerm(term: string): Requirement {
  const setMatch = /^(\S+)\s+(in|notin)\s+\((.*)\)$/.exec(term)
  if (setMatch) {
    const values = (setMatch[3] ?? '').split(',').map((v) => checkValue(v.trim()))
    return { op: setMatch[2] as 'in' | 'notin', key: checkKey(setMatch[1] ?? '', 'label'), values }
  }
  const eqMatch = /^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/.exec(term)
  if (eqMatch) {
    const op = eqMatch[2] === '!=' ? 'neq' : 'eq'
    return { op, key: checkKey(eqMatch[1] ?? '', 'label'), value: checkValue((eqMatch[3] ?? '').trim()) }
  }
  if (term.startsWith('!')) return { op: 'notexists', key: checkKey(term.slice(1).trim(), 'label') }
  return { op: 'exists', key: checkKey(term, 'label') }
}

function matchOne(req: Requirement, values: Record<string, string | undefined>): boolean {
  const v = values[req.key]
  switch (req.op) {
    case 'eq':
      return v === req.value
    case 'neq':
      return v !== req.value
    case 'in':
      return v !== undefined && req.values.includes(v)
    case 'notin':
      return v === undefined || !req.values.includes(v)
    case 'exists':
      return v !== undefined
    case 'notexists':
      return v === undefined
  }
}

function selectorOf(reqs: Requirement[]): Selector {
  return {
    empty: reqs.length === 0,
    matches: (values) => reqs.every((r) => matchOne(r, values)),
  }
}

/** Parses a labelSelector query parameter; throws BadRequest on bad syntax. */
export function parseLabelSelector(text: string | null | undefined): Selector {
  return selectorOf(text ? splitTerms(text).map(parseTerm) : [])
}

/**
 * Parses a fieldSelector query parameter. Only `=`, `==` and `!=` exist for fields,
 * and only fields in `supported` may be named (kube-apiserver refuses the rest).
 */
export function parseFieldSelector(text: string | null | undefined, supported: readonly string[]): Selector {
  if (!text) return selectorOf([])
  const reqs = splitTerms(text).map((term): Requirement => {
    const m = /^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/.exec(term)
    if (!m) throw badRequest(`invalid selector: '${text}'; can't understand '${term}'`)
    const key = m[1] ?? ''
    if (!supported.includes(key)) throw badRequest(`field label not supported: ${key}`)
    return { op: m[2] === '!=' ? 'neq' : 'eq', key, value: (m[3] ?? '').trim() }
  })
  return selectorOf(reqs)
}
