// ---- Mapping Kit interpreter: the semantics of transform() in @segment/actions-core 3.153.0 ----
const MappingKit = (() => {
  const ROOT = '__segment_internal_directive'
  const typeOf = (v) => Object.prototype.toString.call(v).slice(8, -1).toLowerCase()
  const isObject = (v) => typeOf(v) === 'object'
  const article = (s) => ('aeiou'.includes(s.charAt(0)) ? 'an' : 'a')
  const fail = (message) => { throw new Error(message) }
  const SPLIT = /\[(?="|'|\d)|\.|(?<="|'|\d)]+/g
  const own = Object.prototype.hasOwnProperty

  function get(obj, path) {
    if (path === '' || path === '.') return obj
    if (path === null || path === undefined) return undefined
    const keys = path.split(SPLIT).filter((f) => f).map((s) => s.replace(/'|"/g, ''))
    return keys.reduce((o, key) => {
      if (!o) return o
      if (isObject(o)) return own.call(o, key) ? o[key] : undefined
      if (Array.isArray(o) || typeof o === 'string') {
        return key === 'length' || /^(0|[1-9]\d*)$/.test(key) ? o[key] : undefined
      }
      return undefined
    }, obj)
  }

  function render(template, data) {
    const replacer = (chars) => (match) => {
      const value = get(data, match.slice(chars, -chars).trim())
      return value ?? ''
    }
    return template.replace(/\{\{\{([^}]+)\}\}\}/g, replacer(3)).replace(/\{\{([^}]+)\}\}/g, replacer(2))
  }

  function flatten(input, prefix, separator, ignoreArrays) {
    if (isObject(input) || (!ignoreArrays && Array.isArray(input))) {
      return Object.entries(input).reduce((acc, [key, value]) => ({
        ...acc, ...flatten(value, prefix ? `${prefix}${separator}${key}` : key, separator, ignoreArrays)
      }), {})
    }
    return { [prefix]: input }
  }

  function replaceAll(value, pattern, replacement, flags) {
    if (pattern.length > 10) fail('@replace requires a "pattern" less than 10 characters')
    if (replacement.length > 10) fail('@replace requires a "replacement" less than 10 characters')
    return value.replace(new RegExp(pattern.replace(/[-[\]{}()*+?.,\\^$|#\s]/g, '\\$&'), flags), replacement)
  }

  function cleanNulls(value) {
    if (!isObject(value)) return value
    const out = { ...value }
    for (const key of Object.keys(value)) {
      if (value[key] === null) out[key] = undefined
      else if (isObject(value[key])) out[key] = cleanNulls(value[key])
    }
    return out
  }

  function removeUndefined(value) {
    if (Array.isArray(value)) return value.map(removeUndefined)
    if (!isObject(value)) return value
    const out = {}
    for (const key of Object.keys(value)) if (value[key] !== undefined) out[key] = removeUndefined(value[key])
    return out
  }

  const stringArg = (name, fn) => (value, payload) => {
    const str = resolve(value, payload)
    if (typeof str !== 'string') fail(`${name}: expected string, got ${typeOf(str)}`)
    return fn(str, payload)
  }

  const directives = {
    '@if': (o, p) => {
      if (!isObject(o)) fail('@if requires an object with an "exists" key')
      if (!o.exists && !o.blank) fail('@if requires an "exists" key or a "blank" key')
      let ok = false
      if (o.exists !== undefined) {
        const v = resolve(o.exists, p)
        ok = v !== undefined && v !== null
      } else if (o.blank !== undefined) {
        const v = resolve(o.blank, p)
        ok = v !== undefined && v !== null && v != ''
      }
      if (ok && o.then !== undefined) return resolve(o.then, p)
      if (!ok && o.else) return resolve(o.else, p)
      return undefined
    },
    '@case': (o, p) => {
      if (!isObject(o)) fail('@case requires an object with a "operator" key')
      if (!o.operator) fail('@case requires a "operator" key')
      if (!o.value) return undefined
      const v = resolve(o.value, p)
      if (typeof v !== 'string') return v
      if (o.operator === 'lower') return v.toLowerCase()
      if (o.operator === 'upper') return v.toUpperCase()
      return fail('operator key should have a value of "lower" or "upper"')
    },
    '@replace': (o, p) => {
      if (!isObject(o)) fail('@replace requires an object with a "pattern" key')
      if (!o.pattern) fail('@replace requires a "pattern" key')
      const replacement = o.replacement == null ? '' : o.replacement
      const replacement2 = o.pattern2 && o.replacement2 == null ? '' : o.replacement2
      const ignorecase = o.ignorecase == null ? false : o.ignorecase
      const global = o.global == null ? true : o.global
      if (!o.value) return undefined
      let v = resolve(o.value, p)
      if (typeof v === 'boolean' || typeof v === 'number') v = String(v)
      if (typeof v !== 'string' || typeof o.pattern !== 'string' || typeof replacement !== 'string' ||
          typeof ignorecase !== 'boolean' || typeof global !== 'boolean') return ''
      const flags = (global ? 'g' : '') + (ignorecase ? 'i' : '')
      let out = replaceAll(v, o.pattern, replacement, flags)
      if (o.pattern2 && typeof o.pattern2 === 'string' && typeof replacement2 === 'string') {
        out = replaceAll(out, o.pattern2, replacement2, flags)
      }
      return out
    },
    '@arrayPath': (data, p) => {
      if (!Array.isArray(data)) fail(`@arrayPath expected array, got ${typeOf(data)}`)
      const [path, shape] = data
      const root = typeof path === 'string' ? get(p, path.replace('$.', '')) : resolve(path, p)
      if (['object', 'array'].includes(typeOf(root)) && isObject(shape) && Object.keys(shape).length > 0) {
        return (Array.isArray(root) ? root : [root]).map((item) => resolve(shape, item))
      }
      return root
    },
    '@path': stringArg('@path', (path, p) => get(p, path.replace('$.', ''))),
    '@template': stringArg('@template', (template, p) => render(template, p)),
    '@literal': (v, p) => resolve(v, p),
    '@flatten': (o, p) => {
      if (!isObject(o)) fail('@flatten requires an object with a "separator" key')
      if (!o.separator) fail('@flatten requires a "separator" key')
      const separator = resolve(o.separator, p)
      if (typeof separator !== 'string') fail('@flatten requires a string separator')
      return flatten(resolve(o.value, p), '', separator, Boolean(o.omitArrays))
    },
    '@json': (o, p) => {
      if (!isObject(o)) fail('@json requires an object with a "value" key')
      if (!o.mode) fail('@json requires a "mode" key')
      if (!o.value) fail('@json requires a "value" key')
      const v = resolve(o.value, p)
      if (o.mode === 'encode') return JSON.stringify(v)
      if (o.mode === 'decode') return typeof v === 'string' ? JSON.parse(v) : v
      return undefined
    },
    '@merge': (o, p) => {
      if (!isObject(o)) fail('@merge requires an object with an "objects" key and a "direction" key')
      if (!o.direction) fail('@merge requires a "direction" key')
      const direction = resolve(o.direction, p)
      if (!o.objects) fail('@merge requires a "objects" key')
      if (!Array.isArray(o.objects)) fail(`@merge: expected opts.array, got ${typeof o.objects}`)
      const objects = o.objects.map((v) => resolve(v, p))
      if (direction === 'left') objects.reverse()
      return Object.assign({}, ...objects)
    },
    '@transform': (o, p) => {
      if (!isObject(o)) fail('@transform requires an object with an "apply" key and a "mapping" key')
      if (!o.mapping) fail('@transform requires a "mapping" key')
      if (!o.apply) fail('@transform requires a "apply" key')
      if (!isObject(o.apply)) fail('@transform "apply" key should be an object')
      return resolve(o.mapping, transform(o.apply, p))
    },
    '@excludeWhenNull': (v, p) => {
      const r = resolve(v, p)
      return r === null ? undefined : cleanNulls(r)
    }
  }

  function isDirective(v) {
    if (!isObject(v)) return false
    const keys = Object.keys(v)
    return keys.some((k) => k.startsWith('@')) && keys.every((k) => k.startsWith('@') || k === '_metadata')
  }

  function resolve(mapping, payload) {
    if (!isObject(mapping) && !Array.isArray(mapping)) return mapping
    if (isDirective(mapping)) {
      const name = Object.keys(mapping).find((k) => k.startsWith('@'))
      const fn = own.call(directives, name) ? directives[name] : undefined
      if (typeof fn !== 'function') fail(`${name} is not a valid directive, got ${typeOf(fn)}`)
      return fn(mapping[name], payload)
    }
    if (Array.isArray(mapping)) return mapping.map((v) => resolve(v, payload))
    const out = {}
    for (const key of Object.keys(mapping)) out[key] = resolve(mapping[key], payload)
    return out
  }

  // ---- validation (validate.js): problems named by their place, e.g. /properties/ref/@path ----
  class Problem extends Error {
    constructor(message, stack) { super(`/${stack.join('/')} ${message}.`) }
  }
  class Problems extends Error {
    constructor(list) {
      const flat = [].concat(...list.map((e) => (e instanceof Problems ? e.list : [e])))
      super(flat.map((e) => e.message).join('\n'))
      this.name = 'Problems'
      this.list = flat
    }
  }
  const kindOf = (v) => (typeOf(v) === 'object' && Object.keys(v).some((k) => k.startsWith('@')) ? 'directive' : typeOf(v))
  const expect = (ok, text) => (v, stack) => {
    const k = kindOf(v)
    if (k === 'directive' && ok.includes('directive')) return checkDirective(v, stack)
    if (k === 'object' && ok.includes('object')) return ok.includes('raw') ? undefined : checkObject(v, stack)
    if (!ok.includes(k)) throw new Problem(`${text} but it is ${article(k)} ${k}`, stack)
  }
  const raw = expect(['directive', 'raw', 'object', 'array', 'boolean', 'string', 'number', 'null'], 'should be a mapping directive or a JSON value')
  const dirOrString = expect(['directive', 'string'], 'should be a string or a mapping directive')
  const dirOrObject = expect(['directive', 'object'], 'should be a object or a mapping directive')
  const string = expect(['string'], 'should be a string')
  const boolean = expect(['boolean'], 'should be a boolean')
  const array = (v, stack) => { if (typeOf(v) !== 'array') throw new Problem(`should be an array but it is ${article(typeOf(v))} ${typeOf(v)}`, stack) }
  const length = (min, max) => (v, stack) => {
    if (typeof v === 'string' && v.length < min) throw new Problem(`should be a string of length ${min} or greater`, stack)
    if (typeof v === 'string' && v.length > max) throw new Problem(`should be a string of length ${max} or less`, stack)
  }
  const allowed = (...names) => (v, stack) => {
    string(v, stack)
    if (!names.includes(v.toLowerCase())) throw new Problem(`should be one of ${names.join(', ')} but it is ${JSON.stringify(v)}`, stack)
  }
  const chain = (...fns) => (v, stack) => fns.forEach((fn) => fn(v, stack))

  function checkObject(v, stack) {
    const k = kindOf(v)
    if (k !== 'object') throw new Problem(`should be an object but it is ${article(k)} ${k}`, stack)
    const at = Object.keys(v).find((key) => key.charAt(0) === '@')
    if (at) throw new Problem(`shouldn't have directive (@-prefixed) keys but it has ${JSON.stringify(at)}`, stack)
    const errors = []
    for (const key of Object.keys(v)) {
      try { check(v[key], [...stack, key]) } catch (e) { errors.push(e) }
    }
    if (errors.length) throw new Problems(errors)
  }
  function fields(v, spec, stack) {
    checkObject(v, stack)
    const errors = []
    for (const [prop, [how, fn]] of Object.entries(spec)) {
      try {
        if (how === 'required' && v[prop] === undefined) throw new Problem(`should have field ${JSON.stringify(prop)} but it doesn't`, stack)
        if (v[prop] !== undefined) fn(v[prop], [...stack, prop])
      } catch (e) { errors.push(e) }
    }
    if (errors.length) throw new Problems(errors)
  }
  const checks = {
    '@if': (v, s) => fields(v, { exists: ['optional', raw], then: ['optional', raw], else: ['optional', raw] }, s),
    '@case': (v, s) => fields(v, { operator: ['optional', string], value: ['optional', dirOrString] }, s),
    '@replace': (v, s) => fields(v, {
      pattern: ['required', chain(string, length(1, 10))], replacement: ['optional', chain(string, length(0, 10))],
      value: ['required', dirOrString], ignorecase: ['optional', boolean], global: ['optional', boolean]
    }, s),
    '@arrayPath': (v, s) => { array(v, s); dirOrString(v[0], s); check(v[1], s) },
    '@path': (v, s) => dirOrString(v, s),
    '@json': (v, s) => fields(v, { value: ['required', raw], mode: ['required', allowed('encode', 'decode')] }, s),
    '@flatten': (v, s) => fields(v, { separator: ['optional', string], value: ['required', raw] }, s),
    '@merge': (v, s) => {
      fields(v, { direction: ['optional', allowed('left', 'right')], objects: ['required', array] }, s)
      v.objects.forEach((o) => dirOrObject(o, []))
    },
    '@template': (v, s) => dirOrString(v, s),
    '@literal': (v, s) => raw(v, s),
    '@transform': (v, s) => fields(v, { apply: ['required', dirOrObject], mapping: ['required', dirOrObject] }, s),
    '@excludeWhenNull': (v, s) => raw(v, s)
  }
  function checkDirective(v, stack) {
    const keys = Object.keys(v)
    const names = keys.filter((k) => k.startsWith('@'))
    if (names.length > 1) throw new Problem(`should only have one @-prefixed key but it has ${names.length} keys`, stack)
    if (keys.some((k) => !k.startsWith('@') && k !== '_metadata')) throw new Problem(`should only have one @-prefixed key but it has ${keys.length} keys`, stack)
    if (!own.call(checks, names[0])) throw new Problem(`has an invalid directive: ${names[0]}`, stack)
    checks[names[0]](v[names[0]], [...stack, names[0]])
  }
  function check(mapping, stack) {
    const k = kindOf(mapping)
    if (k === 'directive') return checkDirective(mapping, stack)
    if (k === 'object') return checkObject(mapping, stack)
    if (k === 'array') return array(mapping, stack)
  }

  function process(mapping) {
    let out = { ...mapping }
    if (Object.keys(mapping).includes(ROOT)) {
      const rest = {}
      for (const key in mapping) if (key !== ROOT) rest[key] = mapping[key]
      out = mapping[ROOT]
      if (Object.keys(out).length > 1) fail('The root mapping must only have a single directive object')
      const root = out[Object.keys(out)[0]]
      if (!root || typeof root !== 'object') fail('The root directive must be an object')
      root.mapping = rest
    }
    return out
  }

  function transform(mapping, data = {}) {
    if (typeOf(data) !== 'object') fail(`data must be an object, got ${typeOf(data)}`)
    const m = process(mapping)
    check(m, [])
    return removeUndefined(resolve(m, data))
  }

  return { transform, validate: (m) => { try { check(m, []); return [] } catch (e) { return e instanceof Problems ? e.list.map((x) => x.message) : [e.message] } } }
})()
