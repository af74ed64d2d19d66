#!/usr/bin/env node
// Offline IAM check of the build shuttle: is every AWS call a function made allowed by that
// function's own `Policies` in template.yaml?
//
//   node check-calls.mjs [options] CALLS.jsonl [MORE.jsonl ...]     (`-` reads stdin)
//   node check-calls.mjs --explain                                 (the ARN mapping and policies)
//
// Options:
//   --template PATH          the SAM template (default: template.yaml at the repository root)
//   --explain                print the resource → ARN mapping, each function's resolved policy,
//                            and for each checked call the statement that decided it
//   --prefix P               resource names are P-builds, P-sources, P-poll, P-poll-dlq, …
//                            (default "shuttle": the local stack's naming, `{prefix}-builds` …)
//   --resource-name ID=NAME  physical name of the template resource ID (e.g. SecretsKey=<key id>)
//   --account ID             account of the stack and its role (default 123456789012, moto's)
//   --region R               region (default us-east-1)
//   --param NAME=VALUE       a template parameter's value (default: its Default)
//
// A recorded call is one JSON object per line (blank lines are skipped):
//   {"function": "create", "service": "s3", "action": "s3:PutObject",
//    "resource": "arn:aws:s3:::shuttle-sources/sources/0b6f…"}
//   function     the function's Metadata.BinaryName: create, stop, delete, status, sources, poller
//   service      optional; when present it must be the action's prefix
//   action       the IAM action (not the SDK operation): HeadObject is "s3:GetObject",
//                ListObjectsV2 is "s3:ListBucket", CopyObject is two calls (s3:GetObject on the
//                source key, s3:PutObject on the destination key)
//   resource     the ARN the action is authorised on (queues by ARN, not URL; KMS keys as
//                arn:aws:kms:REGION:ACCOUNT:key/ID; DynamoDB indexes as …:table/T/index/I)
//   context      optional {"key": "value" | ["values"]}: request context keys; ListObjectsV2
//                must give {"s3:prefix": "<its Prefix>"} (an s3:prefix condition needs it)
//   missing_key  optional, only with s3:GetObject: true when the GetObject/HeadObject found no
//                key. S3 answers 404 for a missing key only if the caller also has s3:ListBucket
//                on the bucket, else 403 (an S3 rule, not one of IAM's evaluator, so iam-simulate
//                does not model it). Such a call is checked twice: s3:GetObject on the key, and
//                s3:ListBucket on the bucket with the context s3:prefix = the key.
//   operation    optional, informative: the SDK operation (HeadObject, ListObjectsV2, …)
//   test         optional, informative: the test that made the call
//
// Each call is evaluated with @cloud-copilot/iam-simulate's runSimulation: the principal is the
// function's role, the identity policies are that function's inline Policies only, and the
// resource policy is the template's own for that resource when it has one (the KMS key policy,
// which KMS needs besides the role's policy; an S3 bucket or SQS queue policy). Not modelled:
// the managed policies SAM attaches by itself (logs, VPC, the SQS event source's receive and
// delete, which the Lambda service does, not the code). The s3:prefix of the missing-key
// ListBucket is our assumption (AWS documents only "s3:ListBucket on the bucket"): a grant
// whose s3:prefix condition matches the key counts; one that matches no key prefix does not.
//
// Output: one line per distinct (function, action, resource pattern) — UUIDs shown as {uuid},
// long numbers as {n} — ALLOWED or DENIED, with the number of calls.
// Exit: 0 all allowed; 1 some call denied; 2 malformed input (bad line, unknown function,
// unresolvable template, invalid action or ARN for the action) with a message naming it;
// 3 an internal error of this script.

import { readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { runSimulation } from '@cloud-copilot/iam-simulate'
import { CORE_SCHEMA, defineMappingTag, defineScalarTag, defineSequenceTag, load } from 'js-yaml'

const HERE = path.dirname(fileURLToPath(import.meta.url))
export const DEFAULT_TEMPLATE = path.resolve(HERE, '../../template.yaml')

/** Malformed input: exit 2. */
export class InputError extends Error {}

// ---------------------------------------------------------------------------------------------
// CloudFormation YAML: the short-form tags become the long form ({"Fn::Sub": …}, {"Ref": …}).

const SHORT_TAGS = {
  Ref: 'Ref',
  Condition: 'Condition',
  GetAtt: 'Fn::GetAtt',
  Sub: 'Fn::Sub',
  If: 'Fn::If',
  Join: 'Fn::Join',
  Not: 'Fn::Not',
  Equals: 'Fn::Equals',
  And: 'Fn::And',
  Or: 'Fn::Or',
  Select: 'Fn::Select',
  Split: 'Fn::Split',
  FindInMap: 'Fn::FindInMap',
  Base64: 'Fn::Base64',
  Cidr: 'Fn::Cidr',
  GetAZs: 'Fn::GetAZs',
  ImportValue: 'Fn::ImportValue',
  Transform: 'Fn::Transform',
  Length: 'Fn::Length',
  ToJsonString: 'Fn::ToJsonString',
  ForEach: 'Fn::ForEach',
  Contains: 'Fn::Contains',
  EachMemberEquals: 'Fn::EachMemberEquals',
  EachMemberIn: 'Fn::EachMemberIn',
  RefAll: 'Fn::RefAll',
  ValueOf: 'Fn::ValueOf',
  ValueOfAll: 'Fn::ValueOfAll',
  Implies: 'Fn::Implies',
}

function cfnTags() {
  const tags = []
  for (const [short, long] of Object.entries(SHORT_TAGS)) {
    const tag = `!${short}`
    tags.push(
      defineScalarTag(tag, {
        resolve: (source) => {
          if (short === 'GetAtt') {
            const dot = source.indexOf('.')
            return { [long]: dot < 0 ? [source] : [source.slice(0, dot), source.slice(dot + 1)] }
          }
          return { [long]: source }
        },
        identify: () => false,
      }),
      defineSequenceTag(tag, {
        create: () => [],
        addItem: (items, item) => {
          items.push(item)
        },
        finalize: (items) => ({ [long]: items }),
        identify: () => false,
      }),
      defineMappingTag(tag, {
        create: () => ({}),
        addPair: (map, key, value) => {
          map[String(key)] = value
          return ''
        },
        has: (map, key) => Object.hasOwn(map, String(key)),
        keys: (map) => Object.keys(map),
        get: (map, key) => map[String(key)],
        finalize: (map) => ({ [long]: map }),
        identify: () => false,
      }),
    )
  }
  return tags
}

export const CFN_SCHEMA = CORE_SCHEMA.withTags(...cfnTags())

export function loadTemplate(file) {
  let text
  try {
    text = readFileSync(file, 'utf8')
  } catch (error) {
    throw new InputError(`cannot read the template ${file}: ${error.message}`)
  }
  try {
    const template = load(text, { schema: CFN_SCHEMA, filename: file })
    if (!template || typeof template !== 'object' || !template.Resources) {
      throw new InputError(`${file} has no Resources`)
    }
    return template
  } catch (error) {
    if (error instanceof InputError) throw error
    throw new InputError(`${file} does not parse as a CloudFormation template: ${error.message}`)
  }
}

// ---------------------------------------------------------------------------------------------
// Fixed local identities of the template's resources.

/** The local stack's names (infra/local-gateway: `{prefix}-builds`, `-sources`, `-poll`, `-poll-dlq`). */
const KNOWN_NAMES = {
  BuildsTable: 'builds',
  SourcesBucket: 'sources',
  PollQueue: 'poll',
  PollDeadLetterQueue: 'poll-dlq',
  SecretsKey: 'secrets',
}

const TYPE_SUFFIX = {
  'AWS::DynamoDB::Table': 'Table',
  'AWS::S3::Bucket': 'Bucket',
  'AWS::SQS::Queue': 'Queue',
  'AWS::KMS::Key': 'Key',
  'AWS::KMS::Alias': 'Alias',
  'AWS::SNS::Topic': 'Topic',
  'AWS::SecretsManager::Secret': 'Secret',
  'AWS::Serverless::Function': 'Function',
  'AWS::Lambda::Function': 'Function',
  'AWS::IAM::Role': 'Role',
  'AWS::Serverless::HttpApi': 'Api',
  'AWS::Serverless::Api': 'Api',
}

/** The explicit physical-name property of a type, when the template may set it. */
const NAME_PROPERTY = {
  'AWS::DynamoDB::Table': 'TableName',
  'AWS::S3::Bucket': 'BucketName',
  'AWS::SQS::Queue': 'QueueName',
  'AWS::SNS::Topic': 'TopicName',
  'AWS::SecretsManager::Secret': 'Name',
  'AWS::Serverless::Function': 'FunctionName',
  'AWS::Lambda::Function': 'FunctionName',
  'AWS::IAM::Role': 'RoleName',
  'AWS::KMS::Alias': 'AliasName',
}

function kebab(id) {
  return id
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .replace(/([A-Z])([A-Z][a-z])/g, '$1-$2')
    .toLowerCase()
}

const NO_VALUE = Symbol('AWS::NoValue')

export class Stack {
  /**
   * @param template the loaded template
   * @param options {account, region, prefix, names: {LogicalId: name}, params: {Name: value}}
   */
  constructor(template, options = {}) {
    this.template = template
    this.account = options.account ?? '123456789012'
    this.region = options.region ?? 'us-east-1'
    this.partition = 'aws'
    this.prefix = options.prefix ?? 'shuttle'
    this.names = options.names ?? {}
    this.params = options.params ?? {}
    this.resources = template.Resources ?? {}
    this.conditionCache = new Map()
    for (const id of Object.keys(this.names)) {
      if (!this.resources[id]) throw new InputError(`--resource-name ${id}=…: the template has no resource ${id}`)
    }
    for (const name of Object.keys(this.params)) {
      if (!template.Parameters?.[name]) throw new InputError(`--param ${name}=…: the template has no parameter ${name}`)
    }
  }

  /** The physical identity of resource `id`: its name, what Ref gives, and its attributes. */
  physical(id, where) {
    const resource = this.resources[id]
    if (!resource) throw new InputError(`${where}: the template has no resource ${id}`)
    const type = resource.Type
    const { partition: p, region: r, account: a } = this
    let name = this.names[id]
    const nameProperty = NAME_PROPERTY[type]
    if (name === undefined && nameProperty && resource.Properties?.[nameProperty] !== undefined) {
      const explicit = this.resolve(resource.Properties[nameProperty], `${id}.Properties.${nameProperty}`)
      if (typeof explicit === 'string') name = explicit
    }
    if (name === undefined) {
      const suffix = TYPE_SUFFIX[type]
      const stem = KNOWN_NAMES[id] ?? (suffix && id.endsWith(suffix) && id !== suffix ? kebab(id.slice(0, -suffix.length)) : kebab(id))
      name = `${this.prefix}-${stem}`
    }
    switch (type) {
      case 'AWS::DynamoDB::Table': {
        const arn = `arn:${p}:dynamodb:${r}:${a}:table/${name}`
        return { type, name, ref: name, attrs: { Arn: arn, StreamArn: `${arn}/stream/1970-01-01T00:00:00.000` } }
      }
      case 'AWS::S3::Bucket':
        return {
          type,
          name,
          ref: name,
          attrs: {
            Arn: `arn:${p}:s3:::${name}`,
            DomainName: `${name}.s3.amazonaws.com`,
            RegionalDomainName: `${name}.s3.${r}.amazonaws.com`,
          },
        }
      case 'AWS::SQS::Queue': {
        const url = `https://sqs.${r}.amazonaws.com/${a}/${name}`
        return { type, name, ref: url, attrs: { Arn: `arn:${p}:sqs:${r}:${a}:${name}`, QueueName: name, QueueUrl: url } }
      }
      case 'AWS::KMS::Key':
        return { type, name, ref: name, attrs: { Arn: `arn:${p}:kms:${r}:${a}:key/${name}`, KeyId: name } }
      case 'AWS::KMS::Alias': {
        const alias = name.startsWith('alias/') ? name : `alias/${name}`
        return { type, name: alias, ref: alias, attrs: { Arn: `arn:${p}:kms:${r}:${a}:${alias}` } }
      }
      case 'AWS::SNS::Topic': {
        const arn = `arn:${p}:sns:${r}:${a}:${name}`
        return { type, name, ref: arn, attrs: { TopicArn: arn, TopicName: name } }
      }
      case 'AWS::SecretsManager::Secret': {
        const arn = `arn:${p}:secretsmanager:${r}:${a}:secret:${name}-AbCdEf`
        return { type, name, ref: arn, attrs: { Id: arn } }
      }
      case 'AWS::Serverless::Function':
      case 'AWS::Lambda::Function':
        return { type, name, ref: name, attrs: { Arn: `arn:${p}:lambda:${r}:${a}:function:${name}` } }
      case 'AWS::IAM::Role':
        return { type, name, ref: name, attrs: { Arn: `arn:${p}:iam::${a}:role/${name}`, RoleId: `AROA${name.toUpperCase()}` } }
      default:
        return { type, name, ref: name, attrs: {} }
    }
  }

  pseudo(name, where) {
    switch (name) {
      case 'AWS::Region':
        return this.region
      case 'AWS::AccountId':
        return this.account
      case 'AWS::Partition':
        return this.partition
      case 'AWS::URLSuffix':
        return 'amazonaws.com'
      case 'AWS::StackName':
        return this.prefix
      case 'AWS::StackId':
        return `arn:${this.partition}:cloudformation:${this.region}:${this.account}:stack/${this.prefix}/00000000-0000-0000-0000-000000000000`
      case 'AWS::NotificationARNs':
        return []
      case 'AWS::NoValue':
        return NO_VALUE
      default:
        throw new InputError(`${where}: unknown pseudo parameter ${name}`)
    }
  }

  ref(name, where) {
    if (name.startsWith('AWS::')) return this.pseudo(name, where)
    const parameter = this.template.Parameters?.[name]
    if (parameter) {
      let value = this.params[name] ?? parameter.Default
      if (value === undefined) value = `PARAM-${name}`
      if (parameter.Type === 'CommaDelimitedList' || parameter.Type?.startsWith('List<')) {
        return String(value) === '' ? [] : String(value).split(',')
      }
      return typeof value === 'string' ? value : String(value)
    }
    if (this.resources[name]) return this.physical(name, where).ref
    throw new InputError(`${where}: !Ref ${name} names neither a parameter nor a resource`)
  }

  getAtt(id, attribute, where) {
    const physical = this.physical(id, where)
    const value = physical.attrs[attribute]
    if (value === undefined) throw new InputError(`${where}: cannot resolve !GetAtt ${id}.${attribute} (${physical.type}) offline`)
    return value
  }

  condition(name, where) {
    if (this.conditionCache.has(name)) return this.conditionCache.get(name)
    const body = this.template.Conditions?.[name]
    if (body === undefined) throw new InputError(`${where}: unknown condition ${name}`)
    this.conditionCache.set(name, false) // a cycle resolves to false rather than looping
    const value = this.resolve(body, `Conditions.${name}`)
    if (typeof value !== 'boolean') throw new InputError(`Conditions.${name} is not a boolean`)
    this.conditionCache.set(name, value)
    return value
  }

  sub(template, variables, where) {
    if (typeof template !== 'string') throw new InputError(`${where}: !Sub needs a string`)
    return template.replace(/\$\{([^}]*)\}/g, (whole, inner) => {
      if (inner.startsWith('!')) return `\${${inner.slice(1)}}`
      const name = inner.trim()
      if (Object.hasOwn(variables, name)) return String(variables[name])
      if (name.includes('.') && !name.startsWith('AWS::')) {
        const dot = name.indexOf('.')
        return this.getAtt(name.slice(0, dot), name.slice(dot + 1), where)
      }
      const value = this.ref(name, where)
      if (value === NO_VALUE) throw new InputError(`${where}: \${${name}} in !Sub is AWS::NoValue`)
      return Array.isArray(value) ? value.join(',') : String(value)
    })
  }

  /** `value` with every intrinsic function resolved; AWS::NoValue drops keys and items. */
  resolve(value, where) {
    if (Array.isArray(value)) {
      return value.map((item, i) => this.resolve(item, `${where}[${i}]`)).filter((item) => item !== NO_VALUE)
    }
    if (value === null || typeof value !== 'object') return value
    const keys = Object.keys(value)
    if (keys.length === 1 && (keys[0] === 'Ref' || keys[0] === 'Condition' || keys[0].startsWith('Fn::'))) {
      return this.intrinsic(keys[0], value[keys[0]], where)
    }
    const out = {}
    for (const key of keys) {
      const resolved = this.resolve(value[key], `${where}.${key}`)
      if (resolved !== NO_VALUE) out[key] = resolved
    }
    return out
  }

  intrinsic(fn, arg, where) {
    const at = `${where} (${fn})`
    const list = (n) => {
      if (!Array.isArray(arg) || (n !== undefined && arg.length !== n)) {
        throw new InputError(`${at}: expected a list${n !== undefined ? ` of ${n}` : ''}`)
      }
      return arg
    }
    switch (fn) {
      case 'Ref':
        return this.ref(String(this.resolve(arg, at)), at)
      case 'Condition':
        return this.condition(String(arg), at)
      case 'Fn::GetAtt': {
        const [id, ...attribute] = Array.isArray(arg) ? arg : String(arg).split('.')
        return this.getAtt(String(id), attribute.map((a) => this.resolve(a, at)).join('.'), at)
      }
      case 'Fn::Sub': {
        if (typeof arg === 'string') return this.sub(arg, {}, at)
        const [text, variables] = list(2)
        return this.sub(text, this.resolve(variables, at), at)
      }
      case 'Fn::If': {
        const [name, then, otherwise] = list(3)
        return this.condition(String(name), at) ? this.resolve(then, at) : this.resolve(otherwise, at)
      }
      case 'Fn::Join': {
        const [separator, items] = list(2)
        const resolved = this.resolve(items, at)
        if (!Array.isArray(resolved)) throw new InputError(`${at}: !Join needs a list`)
        return resolved.join(separator)
      }
      case 'Fn::Not': {
        const [condition] = list(1)
        return !this.truth(condition, at)
      }
      case 'Fn::And':
        return list().every((c) => this.truth(c, at))
      case 'Fn::Or':
        return list().some((c) => this.truth(c, at))
      case 'Fn::Equals': {
        const [left, right] = list(2).map((side) => this.resolve(side, at))
        return JSON.stringify(normalise(left)) === JSON.stringify(normalise(right))
      }
      case 'Fn::Select': {
        const [index, items] = list(2)
        const resolved = this.resolve(items, at)
        const i = Number(this.resolve(index, at))
        if (!Array.isArray(resolved) || !(i >= 0 && i < resolved.length)) throw new InputError(`${at}: index ${i} out of range`)
        return resolved[i]
      }
      case 'Fn::Split': {
        const [separator, text] = list(2)
        return String(this.resolve(text, at)).split(separator)
      }
      case 'Fn::FindInMap': {
        const [map, top, second] = list(3).map((part) => this.resolve(part, at))
        const found = this.template.Mappings?.[map]?.[top]?.[second]
        if (found === undefined) throw new InputError(`${at}: no mapping ${map}.${top}.${second}`)
        return found
      }
      case 'Fn::Base64':
        return Buffer.from(String(this.resolve(arg, at))).toString('base64')
      case 'Fn::GetAZs': {
        const region = this.resolve(arg, at) || this.region
        return ['a', 'b', 'c'].map((zone) => `${region}${zone}`)
      }
      case 'Fn::Length': {
        const resolved = this.resolve(arg, at)
        if (!Array.isArray(resolved)) throw new InputError(`${at}: !Length needs a list`)
        return resolved.length
      }
      case 'Fn::ToJsonString':
        return JSON.stringify(this.resolve(arg, at))
      default:
        throw new InputError(`${at}: ${fn} cannot be resolved offline`)
    }
  }

  truth(condition, where) {
    const value = this.resolve(condition, where)
    if (typeof value !== 'boolean') throw new InputError(`${where}: not a condition`)
    return value
  }

  /** Every resource the template declares, with the identity used here (for --explain). */
  mapping() {
    const rows = []
    for (const id of Object.keys(this.resources)) {
      const physical = this.physical(id, `Resources.${id}`)
      rows.push({ id, type: physical.type, ref: physical.ref, arn: physical.attrs.Arn ?? physical.attrs.TopicArn ?? physical.attrs.Id })
    }
    return rows
  }

  /** The API and poller functions: {short: {id, role, policies, explicitRole}}. */
  functions() {
    const out = {}
    for (const [id, resource] of Object.entries(this.resources)) {
      if (resource.Type !== 'AWS::Serverless::Function' && resource.Type !== 'AWS::Lambda::Function') continue
      const short = resource.Metadata?.BinaryName
      if (typeof short !== 'string' || !short) throw new InputError(`Resources.${id} has no Metadata.BinaryName`)
      if (out[short]) throw new InputError(`Resources.${id} and ${out[short].id} have the same BinaryName ${short}`)
      if (resource.Properties?.Role !== undefined) {
        throw new InputError(`Resources.${id} uses an existing Role: its policies are not in the template`)
      }
      out[short] = {
        id,
        role: `arn:${this.partition}:iam::${this.account}:role/${this.prefix}-${short}-role`,
        policies: this.policiesOf(id, resource),
      }
    }
    return out
  }

  /** A function's inline `Policies` as plain IAM policy documents. */
  policiesOf(id, resource) {
    const where = `Resources.${id}.Properties.Policies`
    let policies = this.resolve(resource.Properties?.Policies ?? [], where)
    if (!Array.isArray(policies)) policies = [policies]
    return policies.map((policy, i) => {
      const at = `${where}[${i}]`
      if (typeof policy === 'string') {
        throw new InputError(`${at}: managed policy ${policy} cannot be evaluated offline (only inline Statement policies can)`)
      }
      if (!policy || typeof policy !== 'object' || !policy.Statement) {
        const name = policy && typeof policy === 'object' ? Object.keys(policy)[0] : String(policy)
        throw new InputError(`${at}: ${name} is not an inline policy document (SAM policy templates are not expanded)`)
      }
      return { name: `${id}Policy${i + 1}`, policy: { Version: '2012-10-17', ...policy } }
    })
  }

  /** The resource policy that also decides a request on `arn` (a KMS key policy, a bucket or queue policy). */
  resourcePolicyFor(arn) {
    for (const [id, resource] of Object.entries(this.resources)) {
      const where = `Resources.${id}`
      if (resource.Type === 'AWS::KMS::Key') {
        if (this.physical(id, where).attrs.Arn === arn) {
          return resource.Properties?.KeyPolicy ? this.resolve(resource.Properties.KeyPolicy, `${where}.Properties.KeyPolicy`) : undefined
        }
      } else if (resource.Type === 'AWS::S3::BucketPolicy') {
        const bucket = this.resolve(resource.Properties?.Bucket, `${where}.Properties.Bucket`)
        if (arn === `arn:${this.partition}:s3:::${bucket}` || arn.startsWith(`arn:${this.partition}:s3:::${bucket}/`)) {
          return this.resolve(resource.Properties.PolicyDocument, `${where}.Properties.PolicyDocument`)
        }
      } else if (resource.Type === 'AWS::SQS::QueuePolicy') {
        const queues = this.resolve(resource.Properties?.Queues ?? [], `${where}.Properties.Queues`)
        for (const url of queues) {
          const name = String(url).split('/').pop()
          if (arn === `arn:${this.partition}:sqs:${this.region}:${this.account}:${name}`) {
            return this.resolve(resource.Properties.PolicyDocument, `${where}.Properties.PolicyDocument`)
          }
        }
      }
    }
    return undefined
  }
}

function normalise(value) {
  return typeof value === 'number' || typeof value === 'boolean' ? String(value) : value
}

// ---------------------------------------------------------------------------------------------
// Recorded calls.

const FIELDS = new Set(['function', 'service', 'action', 'resource', 'context', 'missing_key', 'operation', 'test'])

export function parseCalls(text, source, functions) {
  const calls = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim()
    if (!line) continue
    const at = `${source}:${i + 1}`
    let call
    try {
      call = JSON.parse(line)
    } catch (error) {
      throw new InputError(`${at}: not JSON (${error.message})`)
    }
    if (!call || typeof call !== 'object' || Array.isArray(call)) throw new InputError(`${at}: not a JSON object`)
    for (const key of Object.keys(call)) {
      if (!FIELDS.has(key)) throw new InputError(`${at}: unknown field "${key}" (known: ${[...FIELDS].join(', ')})`)
    }
    for (const key of ['function', 'action', 'resource']) {
      if (typeof call[key] !== 'string' || !call[key]) throw new InputError(`${at}: "${key}" must be a non-empty string`)
    }
    if (!functions[call.function]) {
      throw new InputError(`${at}: unknown function "${call.function}" (the template's: ${Object.keys(functions).join(', ')})`)
    }
    const colon = call.action.indexOf(':')
    if (colon <= 0 || colon === call.action.length - 1) throw new InputError(`${at}: action "${call.action}" is not service:Action`)
    const service = call.action.slice(0, colon)
    if (call.service !== undefined && call.service !== service) {
      throw new InputError(`${at}: service "${call.service}" does not match action ${call.action}`)
    }
    if (call.action === 's3:HeadObject') throw new InputError(`${at}: s3:HeadObject is not an IAM action; HeadObject is authorised as s3:GetObject`)
    if (!call.resource.startsWith('arn:')) throw new InputError(`${at}: resource "${call.resource}" is not an ARN`)
    const context = call.context ?? {}
    if (typeof context !== 'object' || Array.isArray(context)) throw new InputError(`${at}: "context" must be an object`)
    for (const [key, value] of Object.entries(context)) {
      const ok = typeof value === 'string' || (Array.isArray(value) && value.every((v) => typeof v === 'string'))
      if (!ok) throw new InputError(`${at}: context key ${key} must be a string or a list of strings`)
    }
    if (call.missing_key !== undefined && typeof call.missing_key !== 'boolean') throw new InputError(`${at}: "missing_key" must be true or false`)
    if (call.missing_key && call.action !== 's3:GetObject') {
      throw new InputError(`${at}: "missing_key" applies to s3:GetObject (GetObject, HeadObject) only, not ${call.action}`)
    }
    if (call.missing_key && !/^arn:[^:]+:s3:::[^/]+\/.+/.test(call.resource)) {
      throw new InputError(`${at}: a missing key needs an object ARN (arn:aws:s3:::BUCKET/KEY), not ${call.resource}`)
    }
    calls.push({ at, function: call.function, action: call.action, resource: call.resource, context, missingKey: call.missing_key === true, operation: call.operation })
  }
  return calls
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi

/** A resource or context value with its variable parts folded: UUIDs → {uuid}, long numbers → {n}. */
export function pattern(text) {
  // An ARN's partition, service, region and account stay as they are.
  const head = /^arn:[^:]*:[^:]*:[^:]*:[^:]*:/.exec(text)?.[0] ?? ''
  return head + text.slice(head.length).replace(UUID, '{uuid}').replace(/(?<![\w-])\d{6,}(?![\w-])/g, '{n}')
}

/** The checks a call needs: itself, and for a missing key the ListBucket that makes it a 404. */
function checksOf(call) {
  const checks = [{ action: call.action, resource: call.resource, context: call.context, why: '' }]
  if (call.missingKey) {
    const match = /^(arn:[^:]+:s3:::[^/]+)\/(.+)$/.exec(call.resource)
    checks.push({
      action: 's3:ListBucket',
      resource: match[1],
      context: { 's3:prefix': match[2] },
      why: 'missing key: S3 answers 404 only with s3:ListBucket, else 403',
    })
  }
  return checks
}

function accountOf(arn, fallback) {
  const account = arn.split(':')[4]
  return account || fallback
}

function describeDenial(result, stack, fn, check) {
  const analysis = result.analysis
  const identity = analysis?.identityAnalysis
  if (identity?.result === 'ExplicitlyDenied') return `explicitly denied by ${fn.id}'s policy`
  if (identity?.result === 'Allowed') {
    return analysis?.resourceAnalysis ? 'allowed by the function policy but not by the resource policy (e.g. the KMS key policy)' : 'denied by a resource policy'
  }
  const near = (identity?.unmatchedStatements ?? []).filter((s) => s.actionMatch && s.resourceMatch)
  if (near.length) {
    const context = Object.entries(check.context).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ') || 'no context keys'
    return `a statement of ${fn.id}'s policy grants it only under a condition the request does not meet (${context})`
  }
  const actionOnly = (identity?.unmatchedStatements ?? []).filter((s) => s.actionMatch)
  if (actionOnly.length) return `${fn.id}'s policy grants ${check.action} on other resources only`
  return `${fn.id}'s policy does not grant ${check.action}`
}

function decidingStatements(result) {
  const statements = [
    ...(result.analysis?.identityAnalysis?.allowStatements ?? []).map((s) => `${s.policyId} statement ${s.explain?.identifier ?? '?'}`),
    ...(result.analysis?.resourceAnalysis?.allowStatements ?? []).map((s) => `resource policy statement ${s.explain?.identifier ?? '?'}`),
  ]
  return statements.join(', ')
}

/** Evaluates every call; returns {rows, denied, total}. */
export async function evaluate(stack, functions, calls) {
  const cache = new Map()
  const groups = new Map()
  for (const call of calls) {
    const fn = functions[call.function]
    for (const check of checksOf(call)) {
      const exact = JSON.stringify([call.function, check.action, check.resource, check.context])
      let outcome = cache.get(exact)
      if (!outcome) {
        const simulation = {
          request: {
            principal: fn.role,
            action: check.action,
            resource: { resource: check.resource, accountId: accountOf(check.resource, stack.account) },
            contextVariables: check.context,
          },
          identityPolicies: fn.policies,
          serviceControlPolicies: [],
          resourceControlPolicies: [],
          resourcePolicy: stack.resourcePolicyFor(check.resource),
        }
        const response = await runSimulation(simulation, {})
        if (response.resultType === 'error') {
          const detail = JSON.stringify(response.errors)
          const hint = { 'invalid.action': 'not a known IAM action', 'no.resource.types': `the ARN is not a resource type of ${check.action}` }[response.errors.message] ?? response.errors.message
          const what = response.errors.identityPolicyErrors || response.errors.resourcePolicyErrors ? `the template's policy is invalid: ${detail}` : `${check.action} on ${check.resource} cannot be evaluated: ${hint}`
          throw new InputError(`${call.at}: ${what}`)
        }
        const result = response.resultType === 'single' ? response.result : response.results[0]
        const allowed = response.overallResult === 'Allowed'
        outcome = {
          allowed,
          reason: allowed ? '' : describeDenial(result ?? {}, stack, fn, check),
          by: allowed && result ? decidingStatements(result) : '',
          ignored: result?.ignoredContextKeys ?? [],
        }
        cache.set(exact, outcome)
      }
      const contextPattern = Object.entries(check.context).map(([k, v]) => `${k}=${pattern(Array.isArray(v) ? v.join('|') : v)}`).join(' ')
      const key = JSON.stringify([call.function, check.action, pattern(check.resource), contextPattern, check.why])
      let group = groups.get(key)
      if (!group) {
        group = { function: call.function, action: check.action, resource: pattern(check.resource), context: contextPattern, why: check.why, calls: 0, missing: 0, denied: 0, operations: new Set(), first: call.at, firstDenied: null, by: new Set() }
        groups.set(key, group)
      }
      group.calls++
      if (call.missingKey && !check.why) group.missing++
      if (call.operation) group.operations.add(call.operation)
      if (outcome.by) group.by.add(outcome.by)
      if (!outcome.allowed) {
        group.denied++
        if (!group.firstDenied) group.firstDenied = { at: call.at, resource: check.resource, reason: outcome.reason }
      }
    }
  }
  const order = Object.keys(functions)
  const rows = [...groups.values()].sort(
    (x, y) => order.indexOf(x.function) - order.indexOf(y.function) || x.action.localeCompare(y.action) || x.resource.localeCompare(y.resource) || x.context.localeCompare(y.context),
  )
  return { rows, denied: rows.filter((r) => r.denied).length, total: calls.length }
}

export function formatRow(row, explain) {
  const verdict = row.denied ? 'DENIED ' : 'ALLOWED'
  const parts = [verdict, row.function.padEnd(7), row.action.padEnd(22), row.resource]
  if (row.context) parts.push(`[${row.context}]`)
  const notes = [`${row.calls} call${row.calls === 1 ? '' : 's'}`]
  if (row.operations.size) notes.push([...row.operations].sort().join('/'))
  if (row.missing) notes.push(`${row.missing} of a missing key`)
  if (row.why) notes.push(row.why)
  let line = `${parts.join('  ')}  (${notes.join('; ')})`
  if (row.denied) line += `\n         ${row.denied} denied, first at ${row.firstDenied.at}: ${row.firstDenied.reason}`
  if (explain && row.by.size) line += `\n         allowed by ${[...row.by].join('; ')}`
  return line
}

// ---------------------------------------------------------------------------------------------
// Command line.

function parseArgs(argv) {
  const options = { template: DEFAULT_TEMPLATE, explain: false, names: {}, params: {}, files: [] }
  const pair = (flag, value) => {
    const eq = value === undefined ? -1 : value.indexOf('=')
    if (eq <= 0) throw new InputError(`${flag} needs NAME=VALUE`)
    return [value.slice(0, eq), value.slice(eq + 1)]
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const next = () => {
      if (i + 1 >= argv.length) throw new InputError(`${arg} needs a value`)
      return argv[++i]
    }
    if (arg === '--template') options.template = next()
    else if (arg === '--explain') options.explain = true
    else if (arg === '--prefix') options.prefix = next()
    else if (arg === '--account') options.account = next()
    else if (arg === '--region') options.region = next()
    else if (arg === '--resource-name') {
      const [k, v] = pair(arg, next())
      options.names[k] = v
    } else if (arg === '--param') {
      const [k, v] = pair(arg, next())
      options.params[k] = v
    } else if (arg === '-h' || arg === '--help') options.help = true
    else if (arg.startsWith('--')) throw new InputError(`unknown option ${arg}`)
    else options.files.push(arg)
  }
  return options
}

function usage() {
  const text = readFileSync(fileURLToPath(import.meta.url), 'utf8')
  return text
    .split('\n')
    .slice(1)
    .filter((line, i, all) => all.slice(0, i + 1).every((l) => l.startsWith('//')))
    .map((line) => line.replace(/^\/\/ ?/, ''))
    .join('\n')
}

export async function main(argv, out = (s) => process.stdout.write(`${s}\n`)) {
  const options = parseArgs(argv)
  if (options.help) {
    out(usage())
    return 0
  }
  const template = loadTemplate(options.template)
  const stack = new Stack(template, options)
  const functions = stack.functions()
  if (Object.keys(functions).length === 0) throw new InputError(`${options.template} declares no function`)

  if (options.explain) {
    out(`template ${options.template}; account ${stack.account}, region ${stack.region}`)
    out('resources (logical id → Ref, ARN):')
    for (const row of stack.mapping()) out(`  ${row.id.padEnd(22)} ${row.type.padEnd(28)} Ref=${row.ref}${row.arn ? `  Arn=${row.arn}` : ''}`)
    out('functions (BinaryName → resource, role):')
    for (const [short, fn] of Object.entries(functions)) out(`  ${short.padEnd(8)} ${fn.id.padEnd(18)} ${fn.role}`)
    for (const [short, fn] of Object.entries(functions)) {
      out(`policy of ${short} (${fn.id}):`)
      for (const { policy } of fn.policies) out(JSON.stringify(policy, null, 2).replace(/^/gm, '  '))
    }
    if (options.files.length === 0) return 0
  }
  if (options.files.length === 0) throw new InputError('no recorded calls given (a JSON-lines file, or - for stdin); --help for the format')

  const calls = []
  for (const file of options.files) {
    let text
    try {
      text = file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8')
    } catch (error) {
      throw new InputError(`cannot read ${file}: ${error.message}`)
    }
    calls.push(...parseCalls(text, file === '-' ? 'stdin' : file, functions))
  }
  if (calls.length === 0) throw new InputError(`no recorded calls in ${options.files.join(', ')}`)

  const { rows, denied, total } = await evaluate(stack, functions, calls)
  for (const row of rows) out(formatRow(row, options.explain))
  const silent = Object.keys(functions).filter((short) => !calls.some((c) => c.function === short))
  out(`${total} call${total === 1 ? '' : 's'}, ${rows.length} distinct, ${denied} denied${silent.length ? `; no calls recorded for: ${silent.join(', ')}` : ''}`)
  return denied ? 1 : 0
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error) => {
      if (error instanceof InputError) {
        process.stderr.write(`check-calls: ${error.message}\n`)
        process.exit(2)
      }
      process.stderr.write(`check-calls: internal error: ${error.stack ?? error}\n`)
      process.exit(3)
    },
  )
}
