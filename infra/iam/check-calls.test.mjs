// node --test check-calls.test.mjs: the IAM check against today's template, against copies of it
// with one permission taken away, and on malformed input.

import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const SCRIPT = path.join(HERE, 'check-calls.mjs')
const TEMPLATE = path.resolve(HERE, '../../template.yaml')
const FIXTURES = path.join(HERE, 'fixtures')
const FIXTURE_FILES = readdirSync(FIXTURES)
  .filter((f) => f.endsWith('.jsonl'))
  .sort()
  .map((f) => path.join(FIXTURES, f))

const scratch = mkdtempSync(path.join(tmpdir(), 'shuttle-iam-'))
after(() => rmSync(scratch, { recursive: true, force: true }))

let counter = 0
function scratchFile(name, text) {
  const file = path.join(scratch, `${counter++}-${name}`)
  writeFileSync(file, text)
  return file
}

function check(...args) {
  const run = spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8' })
  return { code: run.status, out: run.stdout, err: run.stderr }
}

const BUCKET = 'arn:aws:s3:::shuttle-sources'
const calls = (...lines) => lines.map((l) => JSON.stringify(l)).join('\n') + '\n'

/** The template with `edit` applied to the text of one resource (from `  Id:` to the next resource). */
function editResource(id, edit) {
  const text = readFileSync(TEMPLATE, 'utf8')
  const start = text.indexOf(`\n  ${id}:\n`)
  assert.ok(start >= 0, `template.yaml has no resource ${id}`)
  const rest = text.slice(start + 1)
  const next = rest.slice(1).search(/\n {2}[A-Za-z0-9]+:\n/)
  const end = next < 0 ? text.length : start + 1 + next + 1
  const block = text.slice(start, end)
  const edited = edit(block)
  assert.notEqual(edited, block, `the edit changed nothing in ${id} (has template.yaml changed?)`)
  return scratchFile(`${id}.yaml`, text.slice(0, start) + edited + text.slice(end))
}

describe("today's template", () => {
  test('allows every recorded fixture call of every function', () => {
    const { code, out, err } = check(...FIXTURE_FILES)
    assert.equal(err, '')
    assert.equal(code, 0, out)
    assert.doesNotMatch(out, /DENIED/)
    assert.doesNotMatch(out, /no calls recorded/)
    for (const fn of ['create', 'stop', 'delete', 'status', 'sources', 'poller']) {
      assert.match(out, new RegExp(`^ALLOWED  ${fn} `, 'm'), `no allowed call of ${fn}`)
    }
    assert.match(out, / 0 denied/)
  })

  test('--explain prints the fixed ARNs and each function', () => {
    const { code, out } = check('--explain')
    assert.equal(code, 0)
    for (const line of [
      /BuildsTable .* Arn=arn:aws:dynamodb:us-east-1:123456789012:table\/shuttle-builds/,
      /SourcesBucket .* Arn=arn:aws:s3:::shuttle-sources$/m,
      /PollQueue .* Arn=arn:aws:sqs:us-east-1:123456789012:shuttle-poll$/m,
      /PollDeadLetterQueue .* Arn=arn:aws:sqs:us-east-1:123456789012:shuttle-poll-dlq$/m,
      /SecretsKey .* Arn=arn:aws:kms:us-east-1:123456789012:key\/shuttle-secrets$/m,
      /^ {2}poller +PollerFunction /m,
    ]) {
      assert.match(out, line)
    }
  })

  test('a missing-key GetObject of logs/* by status passes: status may list logs/*', () => {
    const file = scratchFile(
      'missing.jsonl',
      calls({ function: 'status', service: 's3', action: 's3:GetObject', resource: `${BUCKET}/logs/0b6f3c1e-7d2a-4c59-9a3e-5f1d2b8c4e71/00000000000000000000`, missing_key: true }),
    )
    const { code, out } = check(file)
    assert.equal(code, 0, out)
    assert.match(out, /^ALLOWED  status +s3:ListBucket +arn:aws:s3:::shuttle-sources  \[s3:prefix=logs\/\{uuid\}\/\{n\}\]/m)
  })

  test('a missing-key GetObject outside the listable prefix is denied (403, not 404)', () => {
    // status may read logs/* only; sources may list sources/* only.
    const file = scratchFile(
      'outside.jsonl',
      calls({ function: 'sources', service: 's3', action: 's3:GetObject', resource: `${BUCKET}/logs/x/1`, missing_key: true }),
    )
    const { code, out } = check(file)
    assert.equal(code, 1, out)
    assert.match(out, /^DENIED   sources +s3:GetObject /m)
    assert.match(out, /^DENIED   sources +s3:ListBucket .*s3:prefix=logs\/x\/1/m)
  })

  test('a ListObjectsV2 without its prefix in the context does not meet the s3:prefix condition', () => {
    const file = scratchFile('noprefix.jsonl', calls({ function: 'status', action: 's3:ListBucket', resource: BUCKET }))
    const { code, out } = check(file)
    assert.equal(code, 1, out)
    assert.match(out, /only under a condition the request does not meet \(no context keys\)/)
  })
})

describe('a template with one permission taken away', () => {
  test("create without sqs:SendMessage fails, naming that call", () => {
    const template = editResource('CreateFunction', (block) =>
      block.replace(/\n +- Effect: Allow\n +Action: \[sqs:SendMessage\]\n +Resource: !GetAtt PollQueue\.Arn/, ''),
    )
    const { code, out } = check('--template', template, ...FIXTURE_FILES)
    assert.equal(code, 1, out)
    const denied = out.split('\n').filter((l) => l.startsWith('DENIED'))
    assert.deepEqual(denied.map((l) => l.split(/ +/).slice(1, 4).join(' ')), ['create sqs:SendMessage arn:aws:sqs:us-east-1:123456789012:shuttle-poll'])
    assert.match(out, /first at .*create\.jsonl:\d+: CreateFunction's policy does not grant sqs:SendMessage/)
    // The poller's own sqs:SendMessage is untouched.
    assert.match(out, /^ALLOWED  poller +sqs:SendMessage +arn:aws:sqs:us-east-1:123456789012:shuttle-poll /m)
  })

  test('create without kms:GenerateDataKey (one action of a list) fails on that action only', () => {
    const template = editResource('CreateFunction', (block) => block.replace('[kms:GenerateDataKey, kms:Decrypt]', '[kms:Decrypt]'))
    const { code, out } = check('--template', template, path.join(FIXTURES, 'create.jsonl'))
    assert.equal(code, 1, out)
    assert.match(out, /^DENIED   create +kms:GenerateDataKey /m)
    assert.match(out, /^ALLOWED  create +kms:Decrypt /m)
  })

  test('status without s3:ListBucket: its existing-key reads pass, a missing-key read fails', () => {
    const template = editResource('StatusFunction', (block) =>
      block.replace(/\n +- Effect: Allow\n +Action: \[s3:ListBucket\]\n(?: {14,}.*\n)+?( +)s3:prefix: \["logs\/\*"\]/, ''),
    )
    assert.doesNotMatch(readFileSync(template, 'utf8').split('StatusFunction:')[1].split('SourcesFunction:')[0], /ListBucket/)
    const key = `${BUCKET}/logs/0b6f3c1e-7d2a-4c59-9a3e-5f1d2b8c4e71/00000000000000000000`
    const found = scratchFile('found.jsonl', calls({ function: 'status', action: 's3:GetObject', resource: key }))
    assert.equal(check('--template', template, found).code, 0)
    const missing = scratchFile('missing.jsonl', calls({ function: 'status', action: 's3:GetObject', resource: key, missing_key: true }))
    const { code, out } = check('--template', template, missing)
    assert.equal(code, 1, out)
    assert.match(out, /^ALLOWED  status +s3:GetObject /m)
    assert.match(out, /^DENIED   status +s3:ListBucket +arn:aws:s3:::shuttle-sources .*missing key/m)
    assert.match(out, /StatusFunction's policy does not grant s3:ListBucket/)
  })

  test('the KMS key policy counts: without the account statement the key refuses create', () => {
    const template = editResource('SecretsKey', (block) => block.replace(/AWS: !Sub "arn:\$\{AWS::Partition\}:iam::\$\{AWS::AccountId\}:root"/, 'AWS: arn:aws:iam::111122223333:root'))
    const { code, out } = check('--template', template, path.join(FIXTURES, 'create.jsonl'))
    assert.equal(code, 1, out)
    assert.match(out, /^DENIED   create +kms:GenerateDataKey .*\n.*not by the resource policy/m)
  })
})

describe('options', () => {
  test('--prefix, --resource-name and --account give the local stack its own ARNs', () => {
    const fixture = readFileSync(path.join(FIXTURES, 'poller.jsonl'), 'utf8')
      .replaceAll('shuttle-', 'e2e7-')
      .replaceAll('key/e2e7-secrets', 'key/6f1d0c52-3a51-4b5e-9d0e-8c1f0a7b2d44')
      .replaceAll('123456789012', '000000000000')
    const file = scratchFile('local.jsonl', fixture)
    assert.equal(check(file).code, 1, 'the default names must not match the local ones')
    const { code, out } = check('--prefix', 'e2e7', '--resource-name', 'SecretsKey=6f1d0c52-3a51-4b5e-9d0e-8c1f0a7b2d44', '--account', '000000000000', file)
    assert.equal(code, 0, out)
  })

  test('short tags, conditions, parameters and AWS::NoValue resolve inside Policies', () => {
    const template = scratchFile(
      'mini.yaml',
      `
Parameters:
  Env: {Type: String, Default: prod}
  Extra: {Type: CommaDelimitedList, Default: "a,b"}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
Resources:
  Store:
    Type: AWS::DynamoDB::Table
    Properties: {TableName: !Join ["-", [my, !Select [1, !Ref Extra]]]}
  Fn:
    Type: AWS::Serverless::Function
    Metadata: {BinaryName: fn}
    Properties:
      Policies:
        - Statement:
            - Effect: Allow
              Action: !If [IsProd, [dynamodb:GetItem], [dynamodb:PutItem]]
              Resource: !Sub
                - "\${Arn}/\${Tail}"
                - {Arn: !GetAtt Store.Arn, Tail: !Select [0, !Split ["/", "index/x"]]}
            - !If
              - NotProd
              - {Effect: Allow, Action: "sqs:SendMessage", Resource: "*"}
              - !Ref AWS::NoValue
`,
    )
    const table = 'arn:aws:dynamodb:us-east-1:123456789012:table/my-b'
    const file = scratchFile('mini.jsonl', calls({ function: 'fn', action: 'dynamodb:GetItem', resource: `${table}/index` }, { function: 'fn', action: 'sqs:SendMessage', resource: 'arn:aws:sqs:us-east-1:123456789012:q' }))
    const prod = check('--template', template, file)
    assert.equal(prod.code, 1, prod.out + prod.err)
    assert.match(prod.out, /^ALLOWED  fn +dynamodb:GetItem /m)
    assert.match(prod.out, /^DENIED   fn +sqs:SendMessage /m)
    const dev = check('--template', template, '--param', 'Env=dev', file)
    assert.match(dev.out, /^DENIED   fn +dynamodb:GetItem /m)
    assert.match(dev.out, /^ALLOWED  fn +sqs:SendMessage /m)
  })
})

describe('malformed input exits 2 with a message', () => {
  const cases = [
    ['an unknown function', '{"function":"build","action":"s3:GetObject","resource":"arn:aws:s3:::b/k"}', /unknown function "build"/],
    ['a line that is not JSON', 'not json', /:1: not JSON/],
    ['an unknown field', '{"function":"status","action":"s3:GetObject","resource":"arn:aws:s3:::b/k","missingKey":true}', /unknown field "missingKey"/],
    ['a missing resource', '{"function":"status","action":"s3:GetObject"}', /"resource" must be a non-empty string/],
    ['a resource that is no ARN', '{"function":"create","action":"sqs:SendMessage","resource":"https://sqs.us-east-1.amazonaws.com/1/q"}', /is not an ARN/],
    ['a service that is not the action\'s', '{"function":"create","service":"sqs","action":"s3:PutObject","resource":"arn:aws:s3:::b/k"}', /does not match action/],
    ['the SDK operation HeadObject as an action', '{"function":"sources","action":"s3:HeadObject","resource":"arn:aws:s3:::b/k"}', /authorised as s3:GetObject/],
    ['an unknown IAM action', '{"function":"status","action":"s3:ListBuckets","resource":"arn:aws:s3:::b"}', /not a known IAM action/],
    ['an ARN of the wrong type for the action', '{"function":"create","action":"sqs:SendMessage","resource":"arn:aws:s3:::b"}', /not a resource type of sqs:SendMessage/],
    ['missing_key on another action', '{"function":"status","action":"s3:PutObject","resource":"arn:aws:s3:::b/k","missing_key":true}', /applies to s3:GetObject/],
    ['a context value that is no string', '{"function":"status","action":"s3:ListBucket","resource":"arn:aws:s3:::b","context":{"s3:prefix":1}}', /must be a string/],
  ]
  for (const [name, line, message] of cases) {
    test(name, () => {
      const file = scratchFile('bad.jsonl', `${line}\n`)
      const { code, out, err } = check(file)
      assert.equal(code, 2, out + err)
      assert.match(err, message)
      assert.equal(out, '')
    })
  }

  test('no calls at all', () => {
    const { code, err } = check(scratchFile('empty.jsonl', '\n'))
    assert.equal(code, 2)
    assert.match(err, /no recorded calls in/)
  })

  test('a template that cannot be read or has a managed policy', () => {
    assert.equal(check('--template', path.join(scratch, 'absent.yaml'), FIXTURE_FILES[0]).code, 2)
    const managed = editResource('StopFunction', (block) => block.replace('      Policies:\n', '      Policies:\n        - AWSLambdaBasicExecutionRole\n'))
    const { code, err } = check('--template', managed, FIXTURE_FILES[0])
    assert.equal(code, 2)
    assert.match(err, /managed policy AWSLambdaBasicExecutionRole cannot be evaluated offline/)
  })
})
