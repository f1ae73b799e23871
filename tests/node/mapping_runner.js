// Runs the real Mapping Kit `transform` of @segment/actions-core over many cases in one process.
// usage: node mapping_runner.js NODE_MODULES_DIR CASES.json  ->  one JSON array of results on stdout
'use strict'
const path = require('path')
const fs = require('fs')
const [modules, casesFile] = process.argv.slice(2)
const { transform } = require(path.join(modules, '@segment/actions-core/dist/cjs/mapping-kit/index.js'))
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
    }
    return { error: String(err && err.message), problems }
  }
})
process.stdout.write(JSON.stringify(out))
