// Runs the real Mapping Kit `transform` of @segment/actions-core over many cases in one process.
// usage: node mapping_runner.js NODE_MODULES_DIR CASES.json [MAPPING_KIT_JS]  ->  one JSON array on stdout
// With MAPPING_KIT_JS (the interpreter that exported Segment functions inline), that one runs instead.
'use strict'
const path = require('path')
const fs = require('fs')
const vm = require('vm')
const [modules, casesFile, kit] = process.argv.slice(2)
let transform
if (kit) {
  const context = {}
  vm.createContext(context)
  vm.runInContext(`${fs.readFileSync(kit, 'utf8')}\nthis.MappingKit = MappingKit`, context)
  transform = context.MappingKit.transform
} else {
  transform = require(path.join(modules, '@segment/actions-core/dist/cjs/mapping-kit/index.js')).transform
}
const cases = JSON.parse(fs.readFileSync(casesFile, 'utf8'))
const out = cases.map(({ mapping, payload }) => {
  try {
    const value = transform(mapping, payload)
    return value === undefined ? { undefined: true } : { value }
  } catch (err) {
    let problems = null
    if (err && err.name === 'AggregateError' && typeof err[Symbol.iterator] === 'function') {
      problems = [...err].map((e) => e.message)
    } else if (err && err.name === 'ValidationError') {
      problems = [err.message]
    } else if (err && Array.isArray(err.list)) {
      problems = err.list.map((e) => e.message)
    }
    return { error: String(err && err.message), problems }
  }
})
process.stdout.write(JSON.stringify(out))
