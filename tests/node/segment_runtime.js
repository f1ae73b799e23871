// A small stand-in for Segment's source-function runtime: runs an exported function.js in a vm
// context holding only what Segment provides (onRequest(request, settings), the Segment global
// collecting calls, the error classes, crypto, URL) over many requests in one process.
// usage: node segment_runtime.js FUNCTION_JS CASES.json  ->  one JSON array of results on stdout
'use strict'
const fs = require('fs')
const vm = require('vm')
const crypto = require('crypto')
const [file, casesFile] = process.argv.slice(2)
const code = fs.readFileSync(file, 'utf8')
const cases = JSON.parse(fs.readFileSync(casesFile, 'utf8'))

const ERRORS = ['EventNotSupported', 'InvalidEventPayload', 'ValidationError', 'RetryError', 'DropEvent']

async function runOne(c) {
  const events = []
  const objects = []
  const call = (type) => (message) => { events.push({ type, ...message }) }
  const Segment = {
    identify: call('identify'), track: call('track'), page: call('page'), screen: call('screen'),
    group: call('group'), alias: call('alias'), set: (o) => { objects.push(o) }
  }
  const context = { Segment, crypto, URL, URLSearchParams, console: { log() {}, error() {}, warn() {} } }
  for (const name of ERRORS) {
    context[name] = vm.runInNewContext(`(class ${name} extends Error { constructor(m) { super(m); this.name = '${name}' } })`)
  }
  vm.createContext(context)
  vm.runInContext(code, context, { filename: 'function.js', timeout: 5000 })
  const bytes = Buffer.from(c.body_base64, 'base64')
  const headers = new Map(Object.entries(c.headers).map(([k, v]) => [k.toLowerCase(), v]))
  let used = false
  const once = () => { if (used) throw new TypeError('Body is unusable'); used = true }
  const request = {
    url: c.url,
    headers: { get: (n) => (headers.has(n.toLowerCase()) ? headers.get(n.toLowerCase()) : null), forEach: (fn) => headers.forEach(fn) },
    text: async () => { once(); return new TextDecoder().decode(bytes) },
    json: async () => { once(); return JSON.parse(new TextDecoder().decode(bytes)) }
  }
  try {
    await context.onRequest(request, c.settings || {})
    return { outcome: 'ok', events: JSON.stringify(events), objects: JSON.stringify(objects), error: null }
  } catch (err) {
    const outcome = ERRORS.includes(err && err.name) ? err.name : 'error'
    return { outcome, events: JSON.stringify(events), objects: JSON.stringify(objects), error: `${err && err.name}: ${err && err.message}` }
  }
}

;(async () => {
  const out = []
  for (const c of cases) out.push(await runOne(c))
  process.stdout.write(JSON.stringify(out))
})()
