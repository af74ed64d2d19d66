#!/usr/bin/env python3
"""Deployment rehearsal (`make deploy-check`, after the release build).

Every function's real release binary (the `bootstrap` of `target/lambda/<binary>/bootstrap.zip`)
is started with exactly the environment `template.yaml` gives it — Globals.Function merged with
the function's own Environment.Variables, every CloudFormation construct resolved here the way a
deployment would resolve it — plus only what Lambda itself sets, under a Runtime API emulator,
and invoked with each kind of event the template routes to it, in AWS's own shapes. The AWS
resources come from the template's own properties, created on a private moto server.

A setting a function needs that the template does not give it, an event shape a function
refuses, or an answer other than the documented one fails the rehearsal, naming the function,
the event, what was expected and what came back, with the end of the function's output.
Secret test values are never printed.

    .venv/bin/python infra/deploy/rehearse.py [--template template.yaml] [--lambda-dir target/lambda]

Only the standard library, PyYAML and boto3 (and moto's server) of the repository's .venv.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import io
import json
import os
import platform
import queue
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import boto3
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
# moto's account.
ACCOUNT_ID = "123456789012"
STACK_NAME = "build-shuttle-rehearsal"
# Lambda's Init phase limit for on-demand functions.
INIT_LIMIT_S = 10.0
# A synchronous invocation's response limit (buffered).
RESPONSE_LIMIT_BYTES = 6 * 1024 * 1024
# The total size of a function's environment variables Lambda accepts.
ENVIRONMENT_LIMIT_BYTES = 4 * 1024
# Names Lambda reserves: a template that sets one is refused at deploy time.
RESERVED_VARIABLES = {
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
}
ELF_MACHINES = {0x3E: "x86_64", 0xB7: "arm64"}
MACHINE_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}

ProcessList = list  # of subprocess.Popen, stopped at exit


# --------------------------------------------------------------------------------------------
# Output: everything printed goes through `redact`, so no secret test value is ever shown.

SECRET_VALUES: list[str] = []


def redact(text: str) -> str:
    for value in sorted(SECRET_VALUES, key=len, reverse=True):
        if value:
            text = text.replace(value, "***")
    return text


def say(*parts: Any) -> None:
    print(redact(" ".join(str(p) for p in parts)), flush=True)


def log(message: str) -> None:
    print(redact(f"[rehearsal] {message}"), file=sys.stderr, flush=True)


class RehearsalError(Exception):
    """The template or the rehearsal's own setup cannot be resolved: nothing was rehearsed."""


# --------------------------------------------------------------------------------------------
# 1. template.yaml, with CloudFormation's short tags as small objects resolved below.

class Fn:
    """An intrinsic function (`!Ref X` is `Fn("Ref", "X")`, `!Sub s` is `Fn("Fn::Sub", s)`)."""

    def __init__(self, name: str, arg: Any):
        self.name, self.arg = name, arg

    def __repr__(self) -> str:
        short = self.name.removeprefix("Fn::")
        return f"!{short} {self.arg!r}"


class CfnLoader(yaml.SafeLoader):
    pass


def _construct_tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> Fn:
    if isinstance(node, yaml.ScalarNode):
        arg: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        arg = loader.construct_sequence(node, deep=True)
    else:
        arg = loader.construct_mapping(node, deep=True)
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if name == "Fn::GetAtt" and isinstance(arg, str):
        arg = arg.split(".", 1)
    return Fn(name, arg)


CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict:
    with path.open() as f:
        template = yaml.load(f, Loader=CfnLoader)
    if not isinstance(template, dict) or "Resources" not in template:
        raise RehearsalError(f"{path}: not a CloudFormation template (no Resources)")
    return template


def long_form(value: Any) -> Fn | None:
    """`{"Ref": X}` / `{"Fn::Sub": …}` written out in full, as an `Fn`."""
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key in ("Ref", "Condition") or key.startswith("Fn::"):
            if key == "Fn::GetAtt" and isinstance(arg, str):
                arg = arg.split(".", 1)
            return Fn(key, arg)
    return None


# --------------------------------------------------------------------------------------------
# 3. Resolution: parameters, pseudo parameters, resources, conditions, dynamic references.

NO_VALUE = object()  # AWS::NoValue: the key or item is dropped


@dataclass
class Resource:
    logical_id: str
    type: str
    ref: str
    attrs: dict[str, str] = field(default_factory=dict)
    # A table's index names, which its policies' index ARNs must name.
    indexes: list[str] = field(default_factory=list)


class Stack:
    """Resolves template values as CloudFormation would at deploy time."""

    def __init__(self, template: dict, parameters: dict[str, Any], secrets_client):
        self.template = template
        self.parameters = parameters
        self.secrets_client = secrets_client
        self.resources: dict[str, Resource] = {}
        self.conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": STACK_NAME,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{STACK_NAME}/{uuid.uuid4()}",
            "AWS::NotificationARNs": [],
        }

    # -- values

    def resolve(self, value: Any, where: str) -> Any:
        fn = value if isinstance(value, Fn) else long_form(value)
        if fn is not None:
            return self.function(fn, where)
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                resolved = self.resolve(item, f"{where}.{key}")
                if resolved is not NO_VALUE:
                    out[key] = resolved
            return out
        if isinstance(value, list):
            items = [self.resolve(item, f"{where}[{i}]") for i, item in enumerate(value)]
            return [item for item in items if item is not NO_VALUE]
        if isinstance(value, str):
            return self.dynamic_references(value, where)
        return value

    def function(self, fn: Fn, where: str) -> Any:
        name, arg = fn.name, fn.arg
        here = f"{where} ({fn!r})"
        if name == "Ref":
            return self.ref(self.resolve(arg, where), here)
        if name == "Fn::GetAtt":
            logical_id, attribute = (self.resolve(part, where) for part in arg)
            return self.get_att(logical_id, attribute, here)
        if name == "Fn::Sub":
            return self.sub(arg, where, here)
        if name == "Fn::If":
            condition, when_true, when_false = arg
            return self.resolve(when_true if self.condition(condition, here) else when_false, where)
        if name == "Fn::Join":
            delimiter, items = self.resolve(arg[0], where), self.resolve(arg[1], where)
            if not isinstance(items, list):
                raise RehearsalError(f"{here}: Fn::Join of a {type(items).__name__}, not a list")
            return delimiter.join(self.text(item, here) for item in items)
        if name == "Fn::Select":
            index, items = int(self.resolve(arg[0], where)), self.resolve(arg[1], where)
            if not isinstance(items, list) or not 0 <= index < len(items):
                raise RehearsalError(f"{here}: Fn::Select index {index} is out of range")
            return items[index]
        if name == "Fn::Split":
            delimiter, text = self.resolve(arg[0], where), self.resolve(arg[1], where)
            return self.text(text, here).split(delimiter)
        if name == "Fn::Equals":
            left, right = (self.resolve(item, where) for item in arg)
            return same(left, right)
        if name == "Fn::Not":
            return not self.boolean(self.resolve(arg[0], where), here)
        if name == "Fn::And":
            return all(self.boolean(self.resolve(item, where), here) for item in arg)
        if name == "Fn::Or":
            return any(self.boolean(self.resolve(item, where), here) for item in arg)
        if name == "Condition":
            return self.condition(arg, here)
        if name == "Fn::Contains":
            items, wanted = self.resolve(arg[0], where), self.resolve(arg[1], where)
            return any(same(item, wanted) for item in items)
        if name == "Fn::Base64":
            return base64.b64encode(self.text(self.resolve(arg, where), here).encode()).decode()
        if name == "Fn::FindInMap":
            map_name, top, second = (self.resolve(item, where) for item in arg)
            try:
                return self.resolve(self.template["Mappings"][map_name][top][second], where)
            except KeyError as missing:
                raise RehearsalError(f"{here}: no mapping entry {missing}") from None
        if name == "Fn::GetAZs":
            return [f"{REGION}{zone}" for zone in "abcdef"]
        raise RehearsalError(f"{here}: {name} is not resolved by the rehearsal")

    def ref(self, name: Any, here: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.resources[name].ref
        if name in self.template.get("Resources", {}):
            kind = self.template["Resources"][name].get("Type")
            raise RehearsalError(f"{here}: resource {name} ({kind}) has no local counterpart in the rehearsal")
        raise RehearsalError(f"{here}: {name} is no parameter, resource or pseudo parameter of the template")

    def get_att(self, logical_id: str, attribute: str, here: str) -> str:
        resource = self.resources.get(logical_id)
        if resource is None:
            raise RehearsalError(f"{here}: no resource {logical_id} to read {attribute} of")
        if attribute not in resource.attrs:
            raise RehearsalError(f"{here}: {logical_id} ({resource.type}) has no attribute {attribute} here")
        return resource.attrs[attribute]

    def sub(self, arg: Any, where: str, here: str) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v, where) for k, v in arg[1].items()}
        else:
            text, variables = arg, {}

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return self.text(variables[name], here)
            if "." in name and name.split(".", 1)[0] in self.template.get("Resources", {}):
                return self.get_att(*name.split(".", 1), here)
            return self.text(self.ref(name, here), here)

        return self.dynamic_references(re.sub(r"\$\{([^}]*)\}", replace, text), where)

    def dynamic_references(self, text: str, where: str) -> str:
        """`{{resolve:secretsmanager:…}}`, replaced by the secret's value as at deploy time."""

        def replace(match: re.Match) -> str:
            service, reference = match.group(1), match.group(2)
            if service != "secretsmanager":
                raise RehearsalError(f"{where}: dynamic reference {{{{resolve:{service}:…}}}} is not resolved by the rehearsal")
            return self.secret_value(reference, where)

        return re.sub(r"\{\{resolve:([a-z-]+):([^}]*)\}\}", replace, text)

    def secret_value(self, reference: str, where: str) -> str:
        # secret-id[:SecretString[:json-key[:version-stage[:version-id]]]]; an ARN holds colons.
        parts = reference.split(":")
        if reference.startswith("arn:"):
            secret_id, rest = ":".join(parts[:7]), parts[7:]
        else:
            secret_id, rest = parts[0], parts[1:]
        if not secret_id:
            raise RehearsalError(f"{where}: {{{{resolve:secretsmanager:{reference}}}}} names no secret (an empty parameter?)")
        if rest and rest[0] not in ("", "SecretString"):
            raise RehearsalError(f"{where}: {{{{resolve:secretsmanager:{secret_id}:{rest[0]}…}}}}: only SecretString exists")
        json_key = rest[1] if len(rest) > 1 else ""
        request: dict[str, str] = {"SecretId": secret_id}
        if len(rest) > 2 and rest[2]:
            request["VersionStage"] = rest[2]
        if len(rest) > 3 and rest[3]:
            request["VersionId"] = rest[3]
        try:
            value = self.secrets_client.get_secret_value(**request)["SecretString"]
        except self.secrets_client.exceptions.ResourceNotFoundException:
            raise RehearsalError(f"{where}: the secret {secret_id} does not exist") from None
        if not json_key:
            return value
        try:
            document = json.loads(value)
        except json.JSONDecodeError:
            raise RehearsalError(f"{where}: the secret {secret_id} is not JSON, so it has no key {json_key}") from None
        if json_key not in document:
            raise RehearsalError(f"{where}: the secret {secret_id} has no key {json_key}")
        if not isinstance(document[json_key], str):
            raise RehearsalError(f"{where}: the key {json_key} of the secret {secret_id} is not a string")
        return document[json_key]

    # -- conditions

    def condition(self, name: Any, here: str) -> bool:
        if not isinstance(name, str):
            return self.boolean(self.resolve(name, here), here)
        if name in self.conditions:
            return self.conditions[name]
        definitions = self.template.get("Conditions", {})
        if name not in definitions:
            raise RehearsalError(f"{here}: no condition {name} in the template")
        if name in self._evaluating:
            raise RehearsalError(f"{here}: condition {name} refers to itself")
        self._evaluating.add(name)
        value = self.boolean(self.resolve(definitions[name], f"Conditions.{name}"), f"Conditions.{name}")
        self._evaluating.discard(name)
        self.conditions[name] = value
        return value

    @staticmethod
    def boolean(value: Any, here: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise RehearsalError(f"{here}: {value!r} is not a condition's value (true or false)")

    @staticmethod
    def text(value: Any, here: str) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        raise RehearsalError(f"{here}: a {type(value).__name__} where a string is needed")


def same(left: Any, right: Any) -> bool:
    """Fn::Equals: lists item by item, scalars by their string form (a Number parameter is text)."""
    if isinstance(left, list) or isinstance(right, list):
        return isinstance(left, list) and isinstance(right, list) and len(left) == len(right) and all(
            same(a, b) for a, b in zip(left, right))
    return Stack.text(left, "Fn::Equals") == Stack.text(right, "Fn::Equals")


def check_rules(template: dict, stack: Stack) -> None:
    """Rules are asserted by CloudFormation before anything is created."""
    for name, rule in (template.get("Rules") or {}).items():
        if "RuleCondition" in rule and not stack.boolean(stack.resolve(rule["RuleCondition"], f"Rules.{name}"), name):
            continue
        for index, assertion in enumerate(rule.get("Assertions", [])):
            held = stack.boolean(stack.resolve(assertion["Assert"], f"Rules.{name}.Assertions[{index}]"), name)
            if not held:
                raise RehearsalError(f"rule {name} fails with the rehearsal's parameters: {assertion.get('AssertDescription', '')}")


# --------------------------------------------------------------------------------------------
# Parameters: a test value for each, the defaults where there is one.

def validate_parameter(name: str, spec: dict, value: str) -> None:
    kind = spec.get("Type", "String")
    if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
        raise RehearsalError(f"parameter {name}: the test value {value!r} is not one of {spec['AllowedValues']}")
    if kind == "Number":
        try:
            number = float(value)
        except ValueError:
            raise RehearsalError(f"parameter {name}: {value!r} is not a Number") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise RehearsalError(f"parameter {name}: {value} is below MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise RehearsalError(f"parameter {name}: {value} is above MaxValue {spec['MaxValue']}")
    if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
        raise RehearsalError(f"parameter {name}: {value!r} does not match AllowedPattern")
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        raise RehearsalError(f"parameter {name}: shorter than MinLength")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        raise RehearsalError(f"parameter {name}: longer than MaxLength")


def parameter_values(template: dict, test_values: dict[str, str]) -> dict[str, Any]:
    declared = template.get("Parameters") or {}
    unknown = sorted(set(test_values) - set(declared))
    if unknown:
        raise RehearsalError(f"the rehearsal gives test values to parameters the template no longer declares: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in test_values:
            value = test_values[name]
        elif "Default" in spec:
            value = Stack.text(spec["Default"], f"Parameters.{name}.Default")
        else:
            raise RehearsalError(f"parameter {name} has no default and the rehearsal has no test value for it")
        kind = spec.get("Type", "String")
        if kind == "CommaDelimitedList" or kind.startswith("List<"):
            values[name] = value.split(",")
        else:
            validate_parameter(name, spec, value)
            values[name] = value
    return values


# --------------------------------------------------------------------------------------------
# 2. The private moto server and the template's resources on it.

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(venv: Path, log_path: Path, processes: ProcessList) -> str:
    server = venv / "bin" / "moto_server"
    if not server.exists():
        raise RehearsalError(f"{server} is missing: install the AWS emulator (infra/local/env.sh, ensure_venv)")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with log_path.open("wb") as out:
        process = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env)
    processes.append(process)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RehearsalError(f"the AWS emulator exited ({process.returncode}); see {log_path}")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            return endpoint
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RehearsalError(f"the AWS emulator did not answer within 20 s; see {log_path}")


def physical_name(logical_id: str, lower: bool = False, limit: int = 80) -> str:
    """A name like the one CloudFormation generates when a template names none."""
    suffix = "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(12))
    name = f"{STACK_NAME}-{logical_id}"[: limit - 13] + f"-{suffix}"
    return name.lower() if lower else name


def references(value: Any) -> set[str]:
    """Logical ids a value refers to (Ref, GetAtt, ${…} of Sub)."""
    found: set[str] = set()
    fn = value if isinstance(value, Fn) else long_form(value)
    if fn is not None:
        if fn.name == "Ref" and isinstance(fn.arg, str):
            found.add(fn.arg)
        elif fn.name == "Fn::GetAtt" and isinstance(fn.arg, list) and isinstance(fn.arg[0], str):
            found.add(fn.arg[0])
        elif fn.name == "Fn::Sub":
            text = fn.arg[0] if isinstance(fn.arg, list) else fn.arg
            found |= {name.split(".", 1)[0] for name in re.findall(r"\$\{([^}!][^}]*)\}", text)}
        return found | references(fn.arg)
    if isinstance(value, dict):
        for item in value.values():
            found |= references(item)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    return found


class LocalResources:
    """Creates each resource of the template on moto from the template's own properties."""

    def __init__(self, stack: Stack, session: boto3.session.Session, endpoint: str):
        self.stack = stack
        client = lambda service: session.client(service, endpoint_url=endpoint)  # noqa: E731
        self.dynamodb, self.s3, self.sqs, self.kms = client("dynamodb"), client("s3"), client("sqs"), client("kms")

    def create_all(self) -> None:
        declared = self.stack.template["Resources"]
        order = self.creation_order(declared)
        for logical_id in order:
            definition = declared[logical_id]
            kind = definition.get("Type", "")
            if "Condition" in definition and not self.stack.condition(definition["Condition"], f"Resources.{logical_id}"):
                continue
            creator = {
                "AWS::DynamoDB::Table": self.table,
                "AWS::S3::Bucket": self.bucket,
                "AWS::SQS::Queue": self.queue,
                "AWS::KMS::Key": self.key,
                "AWS::Serverless::HttpApi": self.http_api,
                "AWS::Serverless::Function": self.function,
            }.get(kind)
            if creator is None:
                raise RehearsalError(f"resource {logical_id} of type {kind} is not rehearsed: teach infra/deploy/rehearse.py to create it")
            properties = definition.get("Properties") or {}
            self.stack.resources[logical_id] = creator(logical_id, properties)

    def creation_order(self, declared: dict) -> list[str]:
        order: list[str] = []
        visiting: set[str] = set()

        def visit(logical_id: str) -> None:
            if logical_id in order:
                return
            if logical_id in visiting:
                raise RehearsalError(f"resource {logical_id} depends on itself")
            visiting.add(logical_id)
            definition = declared[logical_id]
            # A function's own properties are resolved when it is started, after every resource.
            if definition.get("Type") != "AWS::Serverless::Function":
                depends = definition.get("DependsOn", [])
                depends = [depends] if isinstance(depends, str) else depends
                for other in sorted(references(definition.get("Properties")) | set(depends)):
                    if other in declared:
                        visit(other)
            visiting.discard(logical_id)
            order.append(logical_id)

        for logical_id in declared:
            visit(logical_id)
        return order

    def props(self, logical_id: str, properties: dict, known: set[str]) -> dict:
        resolved = self.stack.resolve(properties, f"Resources.{logical_id}.Properties")
        extra = sorted(set(resolved) - known)
        if extra:
            raise RehearsalError(f"{logical_id}: properties {', '.join(extra)} are not rehearsed: teach infra/deploy/rehearse.py to apply them")
        return resolved

    def table(self, logical_id: str, properties: dict) -> Resource:
        p = self.props(logical_id, properties, {
            "TableName", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "LocalSecondaryIndexes",
            "BillingMode", "ProvisionedThroughput", "SSESpecification", "StreamSpecification", "TimeToLiveSpecification",
            "PointInTimeRecoverySpecification", "Tags", "TableClass", "DeletionProtectionEnabled"})
        name = p.get("TableName") or physical_name(logical_id)
        request: dict[str, Any] = {"TableName": name, "AttributeDefinitions": p["AttributeDefinitions"], "KeySchema": p["KeySchema"]}
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "BillingMode", "ProvisionedThroughput", "Tags",
                    "TableClass", "DeletionProtectionEnabled"):
            if key in p:
                request[key] = p[key]
        if "SSESpecification" in p:
            sse = p["SSESpecification"]
            request["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled")),
                                           **{k: sse[k] for k in ("SSEType", "KMSMasterKeyId") if k in sse}}
        if "StreamSpecification" in p:
            request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": p["StreamSpecification"]["StreamViewType"]}
        description = self.dynamodb.create_table(**request)["TableDescription"]
        if "TimeToLiveSpecification" in p:
            ttl = p["TimeToLiveSpecification"]
            self.dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
                "AttributeName": ttl["AttributeName"], "Enabled": Stack.boolean(ttl["Enabled"], logical_id)})
        if "PointInTimeRecoverySpecification" in p:
            enabled = Stack.boolean(p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], logical_id)
            self.dynamodb.update_continuous_backups(TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": enabled})
        attrs = {"Arn": description["TableArn"]}
        if description.get("LatestStreamArn"):
            attrs["StreamArn"] = description["LatestStreamArn"]
        indexes = [index["IndexName"] for index in p.get("GlobalSecondaryIndexes", []) + p.get("LocalSecondaryIndexes", [])]
        return Resource(logical_id, "AWS::DynamoDB::Table", name, attrs, indexes)

    def bucket(self, logical_id: str, properties: dict) -> Resource:
        p = self.props(logical_id, properties, {
            "BucketName", "PublicAccessBlockConfiguration", "BucketEncryption", "LifecycleConfiguration",
            "VersioningConfiguration", "Tags", "OwnershipControls"})
        name = p.get("BucketName") or physical_name(logical_id, lower=True, limit=63)
        self.s3.create_bucket(Bucket=name)
        if "PublicAccessBlockConfiguration" in p:
            self.s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=p["PublicAccessBlockConfiguration"])
        if "BucketEncryption" in p:
            rules = []
            for rule in p["BucketEncryption"]["ServerSideEncryptionConfiguration"]:
                entry: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                if "BucketKeyEnabled" in rule:
                    entry["BucketKeyEnabled"] = rule["BucketKeyEnabled"]
                rules.append(entry)
            self.s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        if "LifecycleConfiguration" in p:
            rules = [self.lifecycle_rule(logical_id, rule) for rule in p["LifecycleConfiguration"]["Rules"]]
            self.s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        if "VersioningConfiguration" in p:
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": p["VersioningConfiguration"]["Status"]})
        if "OwnershipControls" in p:
            self.s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=p["OwnershipControls"])
        if "Tags" in p:
            self.s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": p["Tags"]})
        return Resource(logical_id, "AWS::S3::Bucket", name, {
            "Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{REGION}.amazonaws.com"})

    @staticmethod
    def lifecycle_rule(logical_id: str, rule: dict) -> dict:
        """A CloudFormation lifecycle rule in the S3 API's shape."""
        known = {"Id", "Prefix", "Status", "ExpirationInDays", "ExpirationDate", "AbortIncompleteMultipartUpload",
                 "NoncurrentVersionExpirationInDays"}
        extra = sorted(set(rule) - known)
        if extra:
            raise RehearsalError(f"{logical_id}: lifecycle rule properties {', '.join(extra)} are not rehearsed")
        out: dict[str, Any] = {"Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
        if "Id" in rule:
            out["ID"] = rule["Id"]
        if "ExpirationInDays" in rule:
            out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
        if "ExpirationDate" in rule:
            out["Expiration"] = {"Date": rule["ExpirationDate"]}
        if "AbortIncompleteMultipartUpload" in rule:
            out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
        if "NoncurrentVersionExpirationInDays" in rule:
            out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])}
        return out

    def queue(self, logical_id: str, properties: dict) -> Resource:
        attributes = {"DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
                      "VisibilityTimeout", "RedrivePolicy", "RedriveAllowPolicy", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds",
                      "SqsManagedSseEnabled", "FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"}
        p = self.props(logical_id, properties, attributes | {"QueueName", "Tags"})
        fifo = Stack.text(p.get("FifoQueue", False), logical_id) == "true"
        name = p.get("QueueName") or physical_name(logical_id, limit=75) + (".fifo" if fifo else "")
        request_attributes = {}
        for key in sorted(attributes & set(p)):
            value = p[key]
            request_attributes[key] = json.dumps(value) if isinstance(value, dict) else Stack.text(value, f"{logical_id}.{key}")
        request: dict[str, Any] = {"QueueName": name, "Attributes": request_attributes}
        if "Tags" in p:
            request["tags"] = {tag["Key"]: tag["Value"] for tag in p["Tags"]}
        url = self.sqs.create_queue(**request)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return Resource(logical_id, "AWS::SQS::Queue", url, {"Arn": arn, "QueueName": name, "QueueUrl": url})

    def key(self, logical_id: str, properties: dict) -> Resource:
        p = self.props(logical_id, properties, {
            "Description", "EnableKeyRotation", "KeyPolicy", "KeySpec", "KeyUsage", "Enabled", "MultiRegion", "Tags",
            "PendingWindowInDays", "RotationPeriodInDays"})
        request: dict[str, Any] = {}
        if "Description" in p:
            request["Description"] = p["Description"]
        if "KeyPolicy" in p:
            request["Policy"] = json.dumps(p["KeyPolicy"])
        for key in ("KeySpec", "KeyUsage", "MultiRegion"):
            if key in p:
                request[key] = p[key]
        if "Tags" in p:
            request["Tags"] = [{"TagKey": tag["Key"], "TagValue": tag["Value"]} for tag in p["Tags"]]
        metadata = self.kms.create_key(**request)["KeyMetadata"]
        if Stack.text(p.get("EnableKeyRotation", False), logical_id) == "true":
            self.kms.enable_key_rotation(KeyId=metadata["KeyId"])
        return Resource(logical_id, "AWS::KMS::Key", metadata["KeyId"], {"Arn": metadata["Arn"], "KeyId": metadata["KeyId"]})

    def http_api(self, logical_id: str, properties: dict) -> Resource:
        # Served by the rehearsal itself (it is API Gateway here); its properties must resolve.
        self.stack.resolve(properties, f"Resources.{logical_id}.Properties")
        api_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))
        return Resource(logical_id, "AWS::Serverless::HttpApi", api_id, {
            "ApiEndpoint": f"https://{api_id}.execute-api.{REGION}.amazonaws.com"})

    def function(self, logical_id: str, properties: dict) -> Resource:
        name = physical_name(logical_id, limit=64)
        arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
        return Resource(logical_id, "AWS::Serverless::Function", name, {"Arn": arn})


# --------------------------------------------------------------------------------------------
# The functions as deployed: merged properties, environment, events, binary.

@dataclass
class HttpRoute:
    event: str
    method: str
    path: str


@dataclass
class FunctionSpec:
    logical_id: str
    binary: str
    name: str
    arn: str
    memory_mb: int
    timeout_s: int
    environment: dict[str, str]
    lambda_env: dict[str, str]
    routes: list[HttpRoute]
    sqs_events: list[tuple[str, dict]]
    schedules: list[tuple[str, dict]]
    zip_path: Path


def merged_properties(template: dict, properties: dict) -> dict:
    """SAM's Globals: the function's own values win; Environment.Variables merge key by key."""
    globals_ = ((template.get("Globals") or {}).get("Function")) or {}
    merged = dict(globals_)
    for key, value in properties.items():
        if key == "Environment" and "Environment" in globals_:
            variables = dict((globals_["Environment"] or {}).get("Variables") or {})
            variables.update((value or {}).get("Variables") or {})
            merged[key] = {"Variables": variables}
        else:
            merged[key] = value
    return merged


def function_specs(template: dict, stack: Stack, lambda_dir: Path, arch: str) -> list[FunctionSpec]:
    specs = []
    for logical_id, definition in template["Resources"].items():
        if definition.get("Type") != "AWS::Serverless::Function":
            continue
        where = f"Resources.{logical_id}"
        metadata = definition.get("Metadata") or {}
        if metadata.get("BuildMethod") != "rust-cargolambda" or not metadata.get("BinaryName"):
            raise RehearsalError(f"{where}: not a rust-cargolambda function with a BinaryName: not rehearsed")
        p = merged_properties(template, definition.get("Properties") or {})
        events = p.pop("Events", None) or {}
        p = stack.resolve(p, f"{where}.Properties")
        if not str(p.get("Runtime", "")).startswith("provided.al"):
            raise RehearsalError(f"{where}: Runtime {p.get('Runtime')!r} is not an OS-only runtime (provided.al2023) serving a bootstrap")
        if p.get("Handler") is None:
            raise RehearsalError(f"{where}: no Handler")
        architectures = p.get("Architectures", ["x86_64"])
        if architectures != [arch]:
            raise RehearsalError(f"{where}: Architectures {architectures} while the bootstrap is built for {arch}")
        variables = (p.get("Environment") or {}).get("Variables") or {}
        environment: dict[str, str] = {}
        for variable, value in variables.items():
            if variable in RESERVED_VARIABLES:
                raise RehearsalError(f"{where}: {variable} is reserved by Lambda; the template may not set it")
            if isinstance(value, (dict, list)):
                raise RehearsalError(f"{where}.Environment.Variables.{variable}: a {type(value).__name__}, not a string")
            environment[variable] = Stack.text(value, f"{where}.Environment.Variables.{variable}")
        size = sum(len(k) + len(v) for k, v in environment.items())
        if size > ENVIRONMENT_LIMIT_BYTES:
            raise RehearsalError(f"{where}: its environment is {size} bytes; Lambda takes at most {ENVIRONMENT_LIMIT_BYTES}")
        check_policies(stack, logical_id, p.get("Policies"))

        routes, sqs_events, schedules = [], [], []
        for event_name, event in events.items():
            kind = event.get("Type")
            props = stack.resolve(event.get("Properties") or {}, f"{where}.Events.{event_name}")
            if kind == "HttpApi":
                api = props.get("ApiId")
                if api is not None and api not in [r.ref for r in stack.resources.values() if r.type == "AWS::Serverless::HttpApi"]:
                    raise RehearsalError(f"{where}.Events.{event_name}: ApiId {api} is no HttpApi of the template")
                version = str(props.get("PayloadFormatVersion", "2.0"))
                if version != "2.0":
                    raise RehearsalError(f"{where}.Events.{event_name}: payload format {version} is not rehearsed (2.0 is)")
                routes.append(HttpRoute(event_name, str(props["Method"]).upper(), str(props["Path"])))
            elif kind == "SQS":
                sqs_events.append((event_name, props))
            elif kind == "ScheduleV2":
                schedules.append((event_name, props))
            else:
                raise RehearsalError(f"{where}.Events.{event_name}: event type {kind} is not rehearsed")

        function = stack.resources[logical_id]
        memory = int(p.get("MemorySize", 128))
        logging = p.get("LoggingConfig") or {}
        lambda_env = {
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_LAMBDA_FUNCTION_NAME": function.ref,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": logging.get("LogGroup", f"/aws/lambda/{function.ref}"),
            "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d") + f"/[$LATEST]{secrets.token_hex(16)}",
            "_HANDLER": str(p["Handler"]),
            "LAMBDA_RUNTIME_DIR": "/var/runtime",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PATH": "/usr/local/bin:/usr/bin/:/bin:/opt/bin",
            "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
        }
        if str(logging.get("LogFormat", "Text")) == "JSON":
            lambda_env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
            if "ApplicationLogLevel" in logging:
                lambda_env["AWS_LAMBDA_LOG_LEVEL"] = str(logging["ApplicationLogLevel"])
        specs.append(FunctionSpec(
            logical_id=logical_id, binary=metadata["BinaryName"], name=function.ref, arn=function.attrs["Arn"],
            memory_mb=memory, timeout_s=int(p.get("Timeout", 3)), environment=environment, lambda_env=lambda_env,
            routes=routes, sqs_events=sqs_events, schedules=schedules,
            zip_path=lambda_dir / metadata["BinaryName"] / "bootstrap.zip"))
    return specs


def check_policies(stack: Stack, logical_id: str, policies: Any) -> None:
    """The policies resolved; an index ARN names an index the table has."""
    text = json.dumps(policies or [])
    for resource in stack.resources.values():
        if resource.type != "AWS::DynamoDB::Table":
            continue
        for index in re.findall(re.escape(resource.attrs["Arn"]) + r"/index/([A-Za-z0-9_.-]+)", text):
            if index not in resource.indexes:
                raise RehearsalError(f"{logical_id}: a policy grants the index {index} of {resource.logical_id}, which has no such index")


def bootstrap_arch(zip_path: Path) -> str:
    with zipfile.ZipFile(zip_path) as archive:
        with archive.open("bootstrap") as f:
            header = f.read(20)
    if header[:4] != b"\x7fELF":
        raise RehearsalError(f"{zip_path}: bootstrap is not an ELF executable")
    machine = int.from_bytes(header[18:20], "little")
    return ELF_MACHINES.get(machine, f"ELF machine {machine:#x}")


def extract_bootstrap(spec: FunctionSpec, root: Path) -> Path:
    """The zip as Lambda unpacks it into /var/task: bootstrap at the root, executable."""
    task_root = root / spec.binary
    task_root.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(spec.zip_path) as archive:
        try:
            info = archive.getinfo("bootstrap")
        except KeyError:
            raise RehearsalError(f"{spec.zip_path}: no bootstrap at the root of the zip") from None
        mode = (info.external_attr >> 16) & 0o777
        if not mode & 0o111:
            raise RehearsalError(f"{spec.zip_path}: bootstrap is not executable in the zip (mode {mode:o}): Lambda would fail with Runtime.InvalidEntrypoint")
        target = task_root / "bootstrap"
        with archive.open(info) as source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
        target.chmod(mode)
    return task_root


# --------------------------------------------------------------------------------------------
# 4. The Runtime API emulator: one per function process, as each Lambda sandbox has its own.

API_PREFIX = "/2018-06-01/runtime"


@dataclass
class Invocation:
    request_id: str
    event: bytes
    deadline_ms: int
    handed_out: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    response: bytes | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    error: bytes | None = None
    error_type: str | None = None


class RuntimeApi:
    def __init__(self, function_arn: str):
        self.function_arn = function_arn
        self.pending: queue.Queue[Invocation] = queue.Queue()
        self.invocations: dict[str, Invocation] = {}
        self.init_error: tuple[str | None, bytes] | None = None
        self.first_next_at: float | None = None
        self.waiting_next = False
        self.problems: list[str] = []
        self.closed = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"runtime-api {function_arn}", daemon=True)
        self.thread.start()

    def invoke(self, event: Any, timeout_s: int) -> Invocation:
        invocation = Invocation(str(uuid.uuid4()), json.dumps(event).encode(), int(time.time() * 1000) + timeout_s * 1000)
        self.invocations[invocation.request_id] = invocation
        self.pending.put(invocation)
        return invocation

    def close(self) -> None:
        self.closed.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: the rehearsal reports what matters
                pass

            def body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def answer(self, status: int, payload: dict | None = None, headers: dict[str, str] | None = None,
                       raw: bytes | None = None) -> None:
                data = raw if raw is not None else json.dumps(payload or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path != f"{API_PREFIX}/invocation/next":
                    api.problems.append(f"unexpected request GET {self.path}")
                    return self.answer(404, {"errorType": "NotFound", "errorMessage": self.path})
                if api.first_next_at is None:
                    api.first_next_at = time.monotonic()
                api.waiting_next = True
                while not api.closed.is_set():
                    try:
                        invocation = api.pending.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    api.waiting_next = False
                    invocation.handed_out.set()
                    trace = f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"
                    return self.answer(200, raw=invocation.event, headers={
                        "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                        "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                        "Lambda-Runtime-Trace-Id": trace,
                    })
                self.close_connection = True

            def do_POST(self):
                data = self.body()
                if self.path == f"{API_PREFIX}/init/error":
                    api.init_error = (self.headers.get("Lambda-Runtime-Function-Error-Type"), data)
                    return self.answer(202, {"status": "OK"})
                match = re.fullmatch(rf"{API_PREFIX}/invocation/([^/]+)/(response|error)", self.path)
                if not match:
                    api.problems.append(f"unexpected request POST {self.path}")
                    return self.answer(404, {"errorType": "NotFound", "errorMessage": self.path})
                invocation = api.invocations.get(match.group(1))
                if invocation is None or not invocation.handed_out.is_set():
                    api.problems.append(f"an answer for an unknown request id {match.group(1)}")
                    return self.answer(400, {"errorType": "InvalidRequestID", "errorMessage": "unknown request id"})
                if invocation.done.is_set():
                    api.problems.append(f"a second answer for request {invocation.request_id}")
                    return self.answer(400, {"errorType": "InvalidStateTransition", "errorMessage": "already answered"})
                if match.group(2) == "response":
                    if len(data) > RESPONSE_LIMIT_BYTES:
                        invocation.error, invocation.error_type = b"response over 6 MB", "Function.ResponseSizeTooLarge"
                        invocation.done.set()
                        return self.answer(413, {"errorType": "RequestEntityTooLarge", "errorMessage": "over 6 MB"})
                    invocation.response = data
                    invocation.response_headers = {k.lower(): v for k, v in self.headers.items()}
                else:
                    invocation.error = data
                    invocation.error_type = self.headers.get("Lambda-Runtime-Function-Error-Type")
                invocation.done.set()
                return self.answer(202, {"status": "OK"})

        return Handler


# --------------------------------------------------------------------------------------------
# A function's process, started as Lambda starts it, with a clean environment.

class InvokeFailure(Exception):
    pass


class FunctionProcess:
    def __init__(self, spec: FunctionSpec, task_root: Path, environment: dict[str, str], log_path: Path,
                 processes: ProcessList):
        self.spec = spec
        self.api = RuntimeApi(spec.arn)
        self.log_path = log_path
        self.env = dict(environment, AWS_LAMBDA_RUNTIME_API=self.api.address, LAMBDA_TASK_ROOT=str(task_root))
        self.started_at = time.monotonic()
        with log_path.open("wb") as out:
            self.process = subprocess.Popen([str(task_root / "bootstrap")], cwd=task_root, env=self.env,
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        processes.append(self.process)
        self.invoked: dict[str, int] = {}
        self.peak_rss_kib: int | None = None
        self.stopped = False

    def wait_ready(self) -> float:
        """Init: until the first `next` (ms), or why it never came."""
        deadline = self.started_at + INIT_LIMIT_S
        while time.monotonic() < deadline:
            if self.api.first_next_at is not None:
                return (self.api.first_next_at - self.started_at) * 1000
            if self.process.poll() is not None:
                raise InvokeFailure(f"exited ({self.process.returncode}) during init, before asking for an invocation{self.init_error_text()}")
            time.sleep(0.005)
        raise InvokeFailure(f"no invocation asked for within Lambda's {INIT_LIMIT_S:.0f} s init phase")

    def init_error_text(self) -> str:
        if self.api.init_error is None:
            return ""
        kind, body = self.api.init_error
        return f"; init error {kind}: {body.decode(errors='replace')}"

    def invoke(self, event: Any, label: str) -> bytes:
        self.invoked[label] = self.invoked.get(label, 0) + 1
        self.record_rss()
        if self.process.poll() is not None:
            raise InvokeFailure(f"the process had exited ({self.process.returncode}) before this invocation")
        invocation = self.api.invoke(event, self.spec.timeout_s)
        # Lambda ends the invocation at its deadline; a little grace for the answer in flight.
        deadline = time.monotonic() + self.spec.timeout_s + 2
        while not invocation.done.wait(0.05):
            self.record_rss()
            if self.process.poll() is not None:
                raise InvokeFailure(f"the process exited ({self.process.returncode}) during the invocation")
            if time.monotonic() > deadline:
                raise InvokeFailure(f"no answer within the function's Timeout of {self.spec.timeout_s} s")
        self.record_rss()
        if invocation.error is not None:
            raise InvokeFailure(f"invocation error {invocation.error_type}: {invocation.error.decode(errors='replace')}")
        mode = invocation.response_headers.get("lambda-runtime-function-response-mode")
        if mode and mode.lower() == "streaming":
            raise InvokeFailure("a streamed response, which neither API Gateway's HTTP API nor the event sources take")
        return invocation.response or b""

    def record_rss(self) -> None:
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        if match:
            self.peak_rss_kib = max(self.peak_rss_kib or 0, int(match.group(1)))

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join("    | " + line for line in self.output().splitlines()[-lines:])

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.record_rss()
        stop_process(self.process)
        self.api.close()


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=3)


# --------------------------------------------------------------------------------------------
# 5. Events in AWS's own shapes.

def route_matches(route_path: str, raw_path: str) -> dict[str, str] | None:
    route = [s for s in route_path.split("/") if s]
    parts = [s for s in raw_path.split("/") if s]
    if len(route) != len(parts):
        return None
    params = {}
    for pattern, part in zip(route, parts):
        if pattern.startswith("{") and pattern.endswith("}"):
            params[pattern[1:-1]] = urllib.request.unquote(part)
        elif pattern != part:
            return None
    return params


def http_api_event(api_id: str, method: str, route_path: str, raw_path: str, path_params: dict[str, str],
                   token: str | None, body: str | None) -> dict:
    """An API Gateway HTTP API request, payload format version 2.0."""
    now = time.time()
    user_agent = "akkeris-controller/rehearsal"
    headers = {
        "accept": "application/json",
        "host": f"{api_id}.execute-api.{REGION}.amazonaws.com",
        "user-agent": user_agent,
        "x-amzn-trace-id": f"Root=1-{int(now):08x}-{secrets.token_hex(12)}",
        "x-forwarded-for": "198.51.100.7",
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if body is not None:
        headers["content-type"] = "application/json"
        headers["content-length"] = str(len(body.encode()))
    route_key = f"{method} {route_path}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": api_id,
            "domainName": f"{api_id}.execute-api.{REGION}.amazonaws.com",
            "domainPrefix": api_id,
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "198.51.100.7", "userAgent": user_agent},
            "requestId": base64.b64encode(secrets.token_bytes(10)).decode(),
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if path_params:
        event["pathParameters"] = path_params
    if body is not None:
        event["body"] = body
    return event


def sqs_event(messages: list[dict], queue_arn: str) -> dict:
    """An SQS event source mapping's batch, from messages as ReceiveMessage returned them."""
    records = []
    for message in messages:
        attributes = {k: v for k, v in message.get("Attributes", {}).items()
                      if k in ("ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp",
                               "AWSTraceHeader", "MessageGroupId", "MessageDeduplicationId", "SequenceNumber")}
        message_attributes = {}
        for name, value in (message.get("MessageAttributes") or {}).items():
            message_attributes[name] = {
                "stringValue": value.get("StringValue"), "binaryValue": value.get("BinaryValue"),
                "stringListValues": value.get("StringListValues", []), "binaryListValues": value.get("BinaryListValues", []),
                "dataType": value["DataType"]}
        record = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": attributes,
            "messageAttributes": message_attributes,
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": REGION,
        }
        if message.get("MD5OfMessageAttributes"):
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        records.append(record)
    return {"Records": records}


# --------------------------------------------------------------------------------------------
# 6. The story, its checks, and the report.

@dataclass
class Check:
    function: str
    event: str
    ok: bool
    detail: str
    # A consequence of an earlier failure (the function never started): counted, not repeated.
    quiet: bool = False


NOT_STARTED = "not invoked: the function did not start"


class Rehearsal:
    def __init__(self, specs: list[FunctionSpec], processes: dict[str, FunctionProcess], stack: Stack,
                 session: boto3.session.Session, endpoint: str, verbose: bool = False):
        self.verbose = verbose
        self.specs = {spec.binary: spec for spec in specs}
        self.processes = processes
        self.stack = stack
        self.sqs = session.client("sqs", endpoint_url=endpoint)
        self.checks: list[Check] = []
        self.covered: set[tuple[str, str]] = set()
        # Functions whose init failed: their invocations are not attempted.
        self.dead: set[str] = set()
        self.api_id = next(r.ref for r in stack.resources.values() if r.type == "AWS::Serverless::HttpApi")

    # -- bookkeeping

    def record(self, function: str, event: str, ok: bool, detail: str = "") -> bool:
        quiet = not ok and detail == NOT_STARTED
        self.checks.append(Check(function, event, ok, detail, quiet))
        if ok and self.verbose:
            say(f"ok   {function}: {event}{': ' + detail if detail else ''}")
        if not ok and not quiet:
            say(f"FAIL {function}: {event}\n  {detail}\n  last lines of {function}'s output:\n{self.processes[function].tail()}")
        return ok

    def expect(self, function: str, event: str, condition: bool, expected: str, got: str) -> bool:
        return self.record(function, event, condition, "" if condition else f"expected {expected}; got {got}")

    def invoke(self, function: str, event: Any, label: str) -> bytes:
        if function in self.dead:
            raise InvokeFailure(NOT_STARTED)
        return self.processes[function].invoke(event, label)

    # -- HTTP

    def route(self, method: str, raw_path: str) -> tuple[FunctionSpec, HttpRoute, dict[str, str]]:
        """API Gateway's choice: the matching route with the most literal segments, leftmost first."""
        best = None
        for spec in self.specs.values():
            for route in spec.routes:
                if route.method not in (method, "ANY"):
                    continue
                params = route_matches(route.path, raw_path)
                if params is None:
                    continue
                score = tuple(0 if s.startswith("{") else 1 for s in route.path.split("/") if s)
                if best is None or score > best[0]:
                    best = (score, spec, route, params)
        if best is None:
            raise InvokeFailure(f"no route of the template takes {method} {raw_path}")
        return best[1], best[2], best[3]

    def http(self, method: str, raw_path: str, *, expect_function: str, token: str | None = None,
             body: Any = None) -> tuple[str, int | None, dict[str, str], bytes]:
        label = f"{method} {raw_path}{'' if token else ' (no token)'}"
        try:
            spec, route, params = self.route(method, raw_path)
        except InvokeFailure as problem:
            self.record(expect_function, label, False, str(problem))
            return label, None, {}, b""
        if spec.binary != expect_function:
            self.record(expect_function, label, False, f"the template routes it to {spec.binary} ({route.event})")
            return label, None, {}, b""
        label = f"{route.event}: {label}"
        self.covered.add((spec.binary, route.event))
        text = json.dumps(body) if isinstance(body, (dict, list)) else body
        event = http_api_event(self.api_id, method, route.path, raw_path, params, token, text)
        try:
            raw = self.invoke(spec.binary, event, route.event)
        except InvokeFailure as problem:
            self.record(spec.binary, label, False, str(problem))
            return label, None, {}, b""
        try:
            answer = json.loads(raw)
            status = answer["statusCode"]
            if not isinstance(status, int) or not 100 <= status <= 599:
                raise ValueError(f"statusCode {status!r}")
            headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
            if not all(isinstance(v, str) for v in headers.values()):
                raise ValueError("a header value that is not a string")
            content = answer.get("body") or ""
            data = base64.b64decode(content) if answer.get("isBase64Encoded") else content.encode()
        except (ValueError, KeyError, TypeError, AttributeError) as problem:
            self.record(spec.binary, label, False, f"not an HTTP API (2.0) response ({problem}): {raw[:300]!r}")
            return label, None, {}, b""
        return label, status, headers, data

    def http_check(self, method: str, raw_path: str, *, function: str, status: int, token: str | None = None,
                   body: Any = None, json_fields: dict[str, Any] | None = None, text: str | None = None,
                   check: Callable[[int, dict, bytes], str | None] | None = None) -> tuple[int | None, dict, bytes]:
        label, got_status, headers, data = self.http(method, raw_path, expect_function=function, token=token, body=body)
        if got_status is None:
            return None, {}, b""
        shown = data[:300].decode(errors="replace")
        problem = None
        if got_status != status:
            problem = f"expected status {status}; got {got_status} {shown}"
        elif json_fields:
            try:
                document = json.loads(data)
            except ValueError:
                document = None
            if not isinstance(document, dict) or any(document.get(k) != v for k, v in json_fields.items()):
                problem = f"expected a JSON body with {json.dumps(json_fields)}; got {shown}"
        if problem is None and text is not None and data.decode(errors="replace") != text:
            problem = f"expected the body {text!r}; got {shown!r}"
        if problem is None and check is not None:
            try:
                problem = check(got_status, headers, data)
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                problem = f"{type(error).__name__}: {error} in {shown!r}"
        self.record(function, label, problem is None, problem or str(got_status))
        return got_status, headers, data

    # -- the story

    def run(self, tokens: list[str]) -> None:
        token, second_token = tokens[0], tokens[-1]
        app_id, build_id = "rehearsal", "1"
        v2_body = {"source": {"url": "docker://registry.example.com/org/base:1"},
                   "destination": {"url": "docker://registry.example.com/org/app:1"}}

        # status: the health check needs no token.
        self.http_check("GET", "/octhc", function="status", status=200, text="overall_status=good")

        # create (v2), and the same without a token.
        self.http_check("POST", f"/{app_id}/{build_id}", function="create", status=200, token=token, body=v2_body,
                        json_fields={"status": "OK"})
        self.http_check("POST", f"/{app_id}/{build_id}", function="create", status=401, body=v2_body)

        # status and logs of that build; the second token of a rotation is taken too.
        _, _, status_body = self.http_check(
            "GET", f"/{app_id}/{build_id}/status", function="status", status=200, token=second_token,
            json_fields={"status": "pending"}, check=lambda s, h, d: None if "source_id" in json.loads(d) else "no source_id")
        self.http_check("GET", f"/{app_id}/{build_id}/status", function="status", status=401)
        self.http_check("GET", f"/{app_id}/{build_id}/logs", function="status", status=200, token=token,
                        check=lambda s, h, d: None if h.get("content-type", "").startswith("text/plain")
                        else f"content-type {h.get('content-type')!r}, not text/plain")

        # create (legacy), with a docker:// source, and with an inline data: source.
        app_uuid = str(uuid.uuid4())
        docker_build, inline_build = str(uuid.uuid4()), str(uuid.uuid4())
        legacy = {"app": "rehearsal", "space": "default", "app_uuid": app_uuid, "gm_registry_host": "registry.example.com",
                  "gm_registry_repo": "org"}
        self.http_check("POST", "/", function="create", status=200, token=token, json_fields={"status": "ok"},
                        body=dict(legacy, build_uuid=docker_build, sources="docker://registry.example.com/org/base:1"))
        archive = sources_archive()
        self.http_check("POST", "/", function="create", status=200, token=token, json_fields={"status": "ok"},
                        body=dict(legacy, build_uuid=inline_build, build_number=1,
                                  sources="data:base64," + base64.b64encode(archive).decode()))
        self.http_check("POST", "/", function="create", status=400, token=token,
                        json_fields={"status": "Bad Request - missing fields."}, body={"app": "rehearsal"})

        # sources: HEAD and GET, truthfully: a docker:// source is never cached (SPEC §4: it needs
        # no caching), an inline source is cached by create itself.
        unknown = str(uuid.uuid4())
        self.http_check("HEAD", f"/{unknown}", function="sources", status=404, token=token)
        self.http_check("HEAD", f"/{docker_build}", function="sources", status=404, token=token)
        self.http_check("HEAD", f"/{inline_build}", function="sources", status=200, token=token)
        self.http_check("HEAD", f"/{inline_build}", function="sources", status=401)
        self.http_check("GET", f"/{unknown}", function="sources", status=404, token=token)
        self.http_check("GET", f"/{inline_build}", function="sources", status=302, token=token,
                        check=lambda s, h, d: presigned_problem(h.get("location"), archive))

        # stop (v2): the build never reached Jenkins, so it ends at once (SPEC §2: stopped is failed).
        self.http_check("DELETE", f"/{app_id}/{build_id}", function="stop", status=401)
        self.http_check("DELETE", f"/{app_id}/{build_id}", function="stop", status=200, token=token, json_fields={"status": "OK"})
        self.http_check("GET", f"/{app_id}/{build_id}/status", function="status", status=200, token=token,
                        json_fields={"status": "failed", "building": False})

        # delete: an app the shuttle has no build of is a 404, and its job is left alone (SPEC §3).
        ghost = f"/ghostapp-{uuid.uuid4()}"
        self.http_check("DELETE", ghost, function="delete", status=401)
        self.http_check("DELETE", ghost, function="delete", status=404, token=token)

        try:
            v2_source_id = json.loads(status_body).get("source_id")
        except (ValueError, AttributeError):
            v2_source_id = None
        self.poller(created={s for s in (v2_source_id, docker_build, inline_build) if s})

    def poller(self, created: set[str]) -> None:
        spec = self.specs.get("poller")
        if spec is None or not spec.sqs_events or not spec.schedules:
            self.record("poller", "events", False, "the template gives the poller no SQS event and schedule to rehearse")
            return
        for event_name, props in spec.sqs_events:
            self.sqs_batch(spec, event_name, props, created)
        for event_name, props in spec.schedules:
            self.schedule(spec, event_name, props)

    def sqs_batch(self, spec: FunctionSpec, event_name: str, props: dict, created: set[str]) -> None:
        queue_arn = props["Queue"]
        queue_resource = next((r for r in self.stack.resources.values() if r.attrs.get("Arn") == queue_arn), None)
        label = f"{event_name}: SQS batch from {queue_resource.logical_id if queue_resource else queue_arn}"
        if queue_resource is None:
            self.record("poller", label, False, f"the event's Queue {queue_arn} is no queue of the template")
            return
        url = queue_resource.ref
        junk = "not a poll message {"
        self.sqs.send_message(QueueUrl=url, MessageBody=junk)
        messages: dict[str, dict] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(messages) < len(created) + 1:
            for message in self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                                    AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", []):
                messages[message["MessageId"]] = message
        bodies = [m["Body"] for m in messages.values() if m["Body"] != junk]
        named = set()
        for body in bodies:
            try:
                named.add(str(json.loads(body).get("source_id")))
            except (ValueError, AttributeError):
                pass
        self.expect("poller", f"{event_name}: the poll messages create enqueued", named == created,
                    f"one poll message per created build, naming {sorted(created)}", f"{len(bodies)} messages: {bodies}")
        batch = list(messages.values())
        batch_size = int(props.get("BatchSize", 10))
        if len(batch) > batch_size:
            self.record("poller", label, False, f"{len(batch)} messages, more than the mapping's BatchSize {batch_size}")
            return
        ids = {m["MessageId"] for m in batch}
        junk_id = next((m["MessageId"] for m in batch if m["Body"] == junk), None)
        try:
            raw = self.invoke("poller", sqs_event(batch, queue_arn), event_name)
            self.covered.add(("poller", event_name))
        except InvokeFailure as problem:
            self.record("poller", label, False, str(problem))
            return
        shown = raw[:400].decode(errors="replace")
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        reports = "ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or [])
        problem, failed = None, set()
        if reports:
            failures = answer.get("batchItemFailures") if isinstance(answer, dict) else None
            well_formed = isinstance(failures, list) and set(answer) == {"batchItemFailures"} and all(
                isinstance(f, dict) and isinstance(f.get("itemIdentifier"), str) for f in failures)
            if not well_formed:
                problem = f'expected {{"batchItemFailures":[{{"itemIdentifier":…}}]}}; got {shown}'
            else:
                failed = {f["itemIdentifier"] for f in failures}
                if not failed <= ids:
                    problem = f"expected failures naming only ids of the batch {sorted(ids)}; got {shown}"
                elif junk_id in failed:
                    problem = f"expected the junk message moved to the dead-letter queue, not reported failed; got {shown}"
        if not self.record("poller", label, problem is None, problem or f"{len(batch)} messages, {len(failed)} reported failed: {shown}"):
            return
        # The event source mapping deletes what succeeded; the failures come back after the visibility timeout.
        for message in batch:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        self.dead_letter_check(queue_resource, junk, event_name)

    def dead_letter_check(self, queue_resource: Resource, junk: str, event_name: str) -> None:
        label = f"{event_name}: the junk message in the dead-letter queue"
        attributes = self.sqs.get_queue_attributes(QueueUrl=queue_resource.ref, AttributeNames=["RedrivePolicy"])["Attributes"]
        policy = json.loads(attributes.get("RedrivePolicy", "{}"))
        dlq = next((r for r in self.stack.resources.values() if r.attrs.get("Arn") == policy.get("deadLetterTargetArn")), None)
        if dlq is None:
            self.record("poller", label, False, "the poll queue has no dead-letter queue of the template")
            return
        found = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and junk not in found:
            for message in self.sqs.receive_message(QueueUrl=dlq.ref, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                found.append(message["Body"])
        self.expect("poller", label, junk in found, f"the junk body in {dlq.logical_id}", f"{found}")

    def schedule(self, spec: FunctionSpec, event_name: str, props: dict) -> None:
        label = f"{event_name}: ScheduleV2 {props.get('ScheduleExpression')} with its Input"
        if "Input" not in props:
            self.record("poller", label, False, "the schedule has no Input: EventBridge Scheduler would send its own default event")
            return
        try:
            event = json.loads(props["Input"])
        except ValueError as problem:
            self.record("poller", label, False, f"the schedule's Input is not JSON: {problem}")
            return
        try:
            raw = self.invoke("poller", event, event_name)
            self.covered.add(("poller", event_name))
        except InvokeFailure as problem:
            self.record("poller", label, False, str(problem))
            return
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        ok = isinstance(answer, dict) and set(answer) == {"requeued", "failed", "abandoned"} and all(
            isinstance(answer[k], int) and not isinstance(answer[k], bool) and answer[k] >= 0 for k in answer)
        shown = raw[:300].decode(errors="replace")
        self.record("poller", label, ok, shown if ok else f'expected {{"requeued":N,"failed":M,"abandoned":K}}; got {shown}')


def sources_archive() -> bytes:
    """A small tar.gz with a Dockerfile, as a controller would inline it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        content = b"FROM registry.example.com/org/base:1\nCOPY . /app\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mtime = len(content), int(time.time())
        archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def presigned_problem(location: str | None, expected: bytes) -> str | None:
    if not location:
        return "no Location header"
    try:
        with urllib.request.urlopen(location, timeout=10) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as problem:
        return f"the presigned Location {location.split('?')[0]} does not serve the sources: {problem}"
    return None if data == expected else f"the presigned Location serves {len(data)} bytes, not the {len(expected)} bytes sent"


# --------------------------------------------------------------------------------------------
# The proof that the rehearsal can fail: each function without one required setting.

# Each function reads only its own settings: the one it is started without is one it reads.
# `TABLE_NAME` for all but `sources`, which serves from S3 alone.
REQUIRED_SETTING = {"sources": "S3_BUCKET"}


def required_setting(spec: FunctionSpec, override: str | None) -> str:
    return override or REQUIRED_SETTING.get(spec.binary, "TABLE_NAME")


def refuses_without(spec: FunctionSpec, task_root: Path, environment: dict[str, str], variable: str,
                    log_dir: Path, processes: ProcessList) -> tuple[bool, str]:
    reduced = {k: v for k, v in environment.items() if k != variable}
    process = FunctionProcess(spec, task_root, reduced, log_dir / f"{spec.binary}-without-{variable}.log", processes)
    try:
        try:
            process.wait_ready()
            return False, f"started and asked for an invocation although {variable} was missing"
        except InvokeFailure as problem:
            if process.process.poll() is None:
                return False, str(problem)
        said = process.output() + (process.api.init_error[1].decode(errors="replace") if process.api.init_error else "")
        if variable not in said:
            return False, f"stopped at init (exit {process.process.returncode}) without naming {variable}:\n{process.tail()}"
        how = "an init error" if process.api.init_error else f"exit {process.process.returncode}"
        line = next((l for l in said.splitlines() if variable in l), "").strip()
        return True, f"{how}: {line[:160]}"
    finally:
        process.stop()


# --------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, default=REPO_ROOT / "template.yaml")
    parser.add_argument("--lambda-dir", type=Path,
                        default=Path(os.environ.get("CARGO_TARGET_DIR") or REPO_ROOT / "target") / "lambda")
    parser.add_argument("--venv", type=Path, default=REPO_ROOT / ".venv")
    parser.add_argument("--missing", default=None,
                        help="the required setting each function is started without once (default: one it reads, TABLE_NAME or S3_BUCKET)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every check, not only the failures")
    parser.add_argument("--environment-only", action="store_true",
                        help="resolve the template and print each function's environment (secrets redacted); run nothing")
    args = parser.parse_args()

    started = time.monotonic()
    # Our own AWS clients talk to moto with test credentials, whatever the caller's profile says.
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        del os.environ[key]
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

    processes: ProcessList = []
    running: dict[str, FunctionProcess] = {}

    def stop_everything() -> None:
        for process in running.values():
            process.stop()
        for process in processes:
            stop_process(process)

    atexit.register(stop_everything)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda n, _f: sys.exit(128 + n))

    work = Path(tempfile.mkdtemp(prefix="rehearsal-"))
    atexit.register(shutil.rmtree, work, True)
    log_dir = REPO_ROOT / ".local" / "rehearsal"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    try:
        return rehearse(args, started, work, log_dir, processes, running)
    except RehearsalError as problem:
        say(f"rehearsal: {problem}")
        say(f"deployment rehearsal FAILED before any function ran ({time.monotonic() - started:.1f} s)")
        return 1
    finally:
        stop_everything()
        # The function logs are kept (redacted) for a look after a failure.
        for path in log_dir.glob("*.log"):
            path.write_text(redact(path.read_text(errors="replace")))


def rehearse(args, started: float, work: Path, log_dir: Path, processes: ProcessList,
             running: dict[str, FunctionProcess]) -> int:
    template = load_template(args.template)
    declared_functions = {d.get("Metadata", {}).get("BinaryName") for d in template["Resources"].values()
                          if d.get("Type") == "AWS::Serverless::Function"}
    zips = {binary: args.lambda_dir / binary / "bootstrap.zip" for binary in sorted(filter(None, declared_functions))}
    machine = MACHINE_ARCH.get(platform.machine().lower(), platform.machine())
    if args.environment_only:
        arch = machine
    else:
        missing = [str(path) for path in zips.values() if not path.exists()]
        if missing:
            raise RehearsalError(f"no release artefact {', '.join(missing)}: run cargo lambda build --release --output-format zip first")
        arches = {binary: bootstrap_arch(path) for binary, path in zips.items()}
        if len(set(arches.values())) != 1:
            raise RehearsalError(f"the bootstraps are built for different architectures: {arches}")
        arch = next(iter(arches.values()))
        if arch != machine:
            raise RehearsalError(f"the bootstraps are built for {arch} and this machine is {machine}: rehearse on a {arch} machine (or build for {machine})")

    endpoint = start_moto(args.venv, log_dir / "moto.log", processes)
    session = boto3.session.Session(aws_access_key_id="rehearsal", aws_secret_access_key="rehearsal", region_name=REGION)
    secrets_client = session.client("secretsmanager", endpoint_url=endpoint)
    log(f"AWS emulator at {endpoint}")

    # The secrets the parameters name, with test values (never printed).
    tokens = [secrets.token_hex(16), secrets.token_hex(16)]
    jenkins = {"user": "rehearsal-bot", "token": secrets.token_hex(20)}
    access = {"tokens": ",".join(tokens), "sources_signing_key": secrets.token_hex(24)}
    webhook = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    SECRET_VALUES.extend([*tokens, access["tokens"], jenkins["token"], access["sources_signing_key"], webhook,
                          webhook.removeprefix("whsec_")])
    created = {
        "JenkinsSecret": secrets_client.create_secret(Name=f"{STACK_NAME}/jenkins", SecretString=json.dumps(jenkins)),
        "AccessSecret": secrets_client.create_secret(Name=f"{STACK_NAME}/access", SecretString=json.dumps(access)),
        "WebhookSigningSecret": secrets_client.create_secret(Name=f"{STACK_NAME}/webhook-signing", SecretString=webhook),
    }
    test_values = {
        "Architecture": arch,
        "BuildShuttleHost": f"http://127.0.0.1:{free_port()}",
        "JenkinsUrl": f"http://127.0.0.1:{free_port()}/",
        "JenkinsSecret": created["JenkinsSecret"]["Name"],
        # "Name or ARN": one of them by its ARN, as a deployer may give it.
        "AccessSecret": created["AccessSecret"]["ARN"],
        "WebhookSigningSecret": created["WebhookSigningSecret"]["Name"],
        "OpenMode": "false",
    }
    stack = Stack(template, parameter_values(template, test_values), secrets_client)
    check_rules(template, stack)
    LocalResources(stack, session, endpoint).create_all()
    specs = function_specs(template, stack, args.lambda_dir, arch)
    stack.resolve(template.get("Outputs") or {}, "Outputs")
    if args.environment_only:
        for spec in specs:
            say(f"{spec.binary} ({spec.logical_id}, {spec.memory_mb} MB, {spec.timeout_s} s):")
            for name, value in sorted(spec.environment.items()):
                say(f"  {name}={value}")
        return 0
    log("settings from the template: " + ", ".join(f"{spec.binary} {len(spec.environment)}" for spec in specs))

    credentials = {"AWS_ACCESS_KEY_ID": "ASIAREHEARSAL", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
                   "AWS_SESSION_TOKEN": secrets.token_hex(32)}
    environments, task_roots = {}, {}
    for spec in specs:
        task_roots[spec.binary] = extract_bootstrap(spec, work)
        # Exactly what Lambda gives the process: the template's variables, Lambda's own, and the
        # emulator's endpoint (AWS_ENDPOINT_URL, the code's only local switch, SPEC §6).
        environments[spec.binary] = {**spec.environment, **spec.lambda_env, **credentials, "AWS_ENDPOINT_URL": endpoint}

    # Each function refuses to start without a required setting, naming it.
    refusals = {}
    for spec in specs:
        refusals[spec.binary] = refuses_without(spec, task_roots[spec.binary], environments[spec.binary],
                                                required_setting(spec, args.missing),
                                                log_dir, processes)

    # The warm functions: one process each, serving the story's invocations in order.
    init_ms: dict[str, float | None] = {}
    for spec in specs:
        running[spec.binary] = FunctionProcess(spec, task_roots[spec.binary], environments[spec.binary],
                                               log_dir / f"{spec.binary}.log", processes)
    rehearsal = Rehearsal(specs, running, stack, session, endpoint, args.verbose)
    for spec in specs:
        try:
            init_ms[spec.binary] = running[spec.binary].wait_ready()
        except InvokeFailure as problem:
            init_ms[spec.binary] = None
            said = [line for line in running[spec.binary].output().splitlines() if line.strip()]
            rehearsal.record(spec.binary, "init with the template's environment", False,
                             f"{problem}{': ' + said[-1][:300] if said else ''}")
            rehearsal.dead.add(spec.binary)
    for spec in specs:
        ok, detail = refusals[spec.binary]
        rehearsal.record(spec.binary, f"init without {required_setting(spec, args.missing)}", ok, detail)

    rehearsal.run(tokens)

    # Every event of the template invoked; the processes still warm; the logs JSON, without secrets.
    for spec in specs:
        process = running[spec.binary]
        for event in [r.event for r in spec.routes] + [e for e, _ in spec.sqs_events] + [e for e, _ in spec.schedules]:
            if (spec.binary, event) not in rehearsal.covered and not any(
                    c.function == spec.binary and c.event.startswith(f"{event}:") and not c.ok for c in rehearsal.checks):
                rehearsal.record(spec.binary, event, False, "an event of the template the story does not invoke: add it to the story")
        if init_ms.get(spec.binary) is not None:
            alive = process.process.poll() is None and process.api.waiting_next
            rehearsal.expect(spec.binary, "warm after its invocations", alive, "waiting for the next invocation",
                             f"exit {process.process.returncode}" if process.process.poll() is not None else "busy")
        process.stop()
        output = process.output()
        leaked = [i for i, value in enumerate(SECRET_VALUES) if value and value in output]
        rehearsal.expect(spec.binary, "its logs carry no secret", not leaked, "no secret test value in the output",
                         f"{len(leaked)} secret value(s) in the output (see .local/rehearsal/{spec.binary}.log, redacted)")
        if "AWS_LAMBDA_LOG_FORMAT" in spec.lambda_env and spec.binary not in rehearsal.dead:
            plain = [line for line in output.splitlines() if line.strip() and not is_json_object(line)]
            rehearsal.expect(spec.binary, "its logs are JSON (LoggingConfig.LogFormat JSON)", not plain,
                             "one JSON object per line", f"{len(plain)} other line(s), first: {plain[0][:200] if plain else ''}")
        if process.peak_rss_kib is not None:
            rehearsal.expect(spec.binary, "memory", process.peak_rss_kib < spec.memory_mb * 1024,
                             f"a peak RSS under MemorySize {spec.memory_mb} MB", f"{process.peak_rss_kib / 1024:.0f} MiB")
        for problem in process.api.problems:
            rehearsal.record(spec.binary, "Runtime API", False, problem)

    return report(specs, running, rehearsal, refusals, init_ms, started, args.missing)


def is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def report(specs: list[FunctionSpec], running: dict[str, FunctionProcess], rehearsal: Rehearsal,
           refusals: dict[str, tuple[bool, str]], init_ms: dict[str, float | None], started: float, missing: str | None) -> int:
    rows = [("function", "events invoked", "init", "peak RSS", "without a setting it reads", "checks", "result")]
    for spec in specs:
        process = running[spec.binary]
        checks = [c for c in rehearsal.checks if c.function == spec.binary]
        failed = [c for c in checks if not c.ok]
        events = ", ".join(f"{event}×{count}" for event, count in process.invoked.items()) or "-"
        init = f"{init_ms[spec.binary]:.0f} ms" if init_ms.get(spec.binary) is not None else "failed"
        rss = f"{process.peak_rss_kib / 1024:.0f}/{spec.memory_mb} MiB" if process.peak_rss_kib else "-"
        refused = f"{required_setting(spec, missing)}: refused, named" if refusals[spec.binary][0] else "FAIL"
        rows.append((spec.binary, events, init, rss, refused, f"{len(checks) - len(failed)}/{len(checks)}",
                     "pass" if not failed else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    say("")
    for row in rows:
        say("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    failures = [c for c in rehearsal.checks if not c.ok]
    elapsed = time.monotonic() - started
    say("")
    if failures:
        say(f"deployment rehearsal FAILED: {len(failures)} of {len(rehearsal.checks)} checks, in {elapsed:.1f} s")
        for check in failures:
            if not check.quiet:
                first = check.detail.splitlines()[0] if check.detail else ""
                say(f"  {check.function}: {check.event}: {first}")
        for function in sorted(rehearsal.dead):
            skipped = sum(1 for c in failures if c.quiet and c.function == function)
            say(f"  {function}: {skipped} invocation(s) not made: it did not start")
        say("function logs (redacted): .local/rehearsal/")
        return 1
    say(f"deployment rehearsal passed: {len(rehearsal.checks)} checks, {sum(sum(p.invoked.values()) for p in running.values())} invocations, in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
