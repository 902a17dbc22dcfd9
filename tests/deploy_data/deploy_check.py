#!/usr/bin/env python3
"""Helper of tests/deploy/: reads the deployment files the way their tools would, prints JSON.

Runs with the emulator venv's Python (.emulators/venv, made by scripts/install-emulators), which has
PyYAML, jsonschema and boto3. Sub-commands, each printing one JSON document on stdout:

  compose FILE SCHEMA [ENV_JSON]
                            interpolate ${VAR:-default} as docker compose does (with the environment
                            ENV_JSON, a JSON object; empty when left out), validate against the
                            Compose Specification's JSON schema, print {"errors": [...], "model": {...}}
  yaml FILE                 the YAML file as JSON, read as YAML 1.2 readers do (GitHub Actions):
                            `on`, `yes`, `no` stay strings
  cfn TEMPLATE PARAMS_JSON  resolve a CloudFormation template for the given parameter values
                            (defaults for the others): !Ref, !Sub, !GetAtt, !If and friends;
                            print {"violations": [...], "resources": {name: {Type, Properties
                            resolved, and DeletionPolicy, UpdateReplacePolicy where given}},
                            "outputs": {name: resolved value}}
  setup-pattern [BUCKET [PREFIX]]
                            the rule pattern as scripts/setup_resources.py builds it (its own
                            load_pattern on its default pattern file)
"""

import json
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def fail(msg):
    print(f"deploy_check: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- compose


INTERPOLATION = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value, env):
    """docker compose's variable substitution, for the forms it documents."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m):
        if m.group(0) == "$$":
            return "$"
        expr = m.group("braced") if m.group("braced") is not None else m.group("named")
        for op in (":-", "-", ":?", "?", ":+", "+"):
            if op in expr:
                name, arg = expr.split(op, 1)
                current = env.get(name)
                unset_or_empty = current in (None, "")
                unset = current is None
                if op == ":-":
                    return arg if unset_or_empty else current
                if op == "-":
                    return arg if unset else current
                if op in (":?", "?"):
                    if (op == ":?" and unset_or_empty) or (op == "?" and unset):
                        fail(f"compose: required variable {name} is not set: {arg}")
                    return current
                if op == ":+":
                    return "" if unset_or_empty else arg
                return "" if unset else arg
        return env.get(expr, "")

    return INTERPOLATION.sub(sub, value)


def compose(path, schema_path, env_json="{}"):
    import jsonschema

    with open(path) as f:
        model = yaml.safe_load(f)
    model = interpolate(model, json.loads(env_json))
    with open(schema_path) as f:
        schema = json.load(f)
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(model), key=lambda e: list(map(str, e.absolute_path)))
    ]
    print(json.dumps({"errors": errors, "model": model}))


# ---------------------------------------------------------------- plain YAML


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where `on` is the boolean true; GitHub reads a workflow's `on:` as a
    key. Only true/false are booleans here, as in YAML 1.2."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def plain_yaml(path):
    with open(path) as f:
        print(json.dumps(yaml.load(f, Loader=Yaml12Loader)))


# ---------------------------------------------------------------- CloudFormation

INTRINSICS = {
    "Ref": "Ref",
    "Condition": "Condition",
    **{name: f"Fn::{name}" for name in (
        "Sub", "GetAtt", "If", "Equals", "Not", "And", "Or", "Select", "Split", "Join",
        "Base64", "FindInMap", "ImportValue", "GetAZs", "Cidr", "Length", "ToJsonString",
    )},
}


class CfnLoader(yaml.SafeLoader):
    pass


def _intrinsic(key):
    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if key == "Fn::GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _tag, _key in INTRINSICS.items():
    CfnLoader.add_constructor(f"!{_tag}", _intrinsic(_key))

NO_VALUE = object()
PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "quilt-notify",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/quilt-notify/1",
    "AWS::URLSuffix": "amazonaws.com",
}


class Resolver:
    def __init__(self, template, params):
        self.template = template
        self.resources = template.get("Resources", {})
        self.params = params
        self.conditions = template.get("Conditions", {})

    def ref(self, name):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        if name in self.resources:
            kind = self.resources[name].get("Type")
            if kind == "AWS::SQS::Queue":
                return f"https://sqs.us-east-1.amazonaws.com/123456789012/quilt-notify-{name}"
            return f"quilt-notify-{name}"
        fail(f"cfn: !Ref {name}: no such parameter, pseudo parameter or resource")

    def getatt(self, name, attr):
        if name not in self.resources:
            fail(f"cfn: !GetAtt {name}.{attr}: no such resource")
        return f"{name}.{attr}"

    def condition(self, name):
        if name not in self.conditions:
            fail(f"cfn: no condition {name}")
        return bool(self.resolve(self.conditions[name]))

    def sub(self, text, variables):
        def one(m):
            expr = m.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                return str(variables[expr])
            if "." in expr and expr.split(".", 1)[0] in self.resources:
                return self.getatt(*expr.split(".", 1))
            value = self.ref(expr)
            if value is NO_VALUE:
                fail(f"cfn: ${{{expr}}} is AWS::NoValue")
            return str(value)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, node):
        if isinstance(node, list):
            items = [self.resolve(v) for v in node]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::GetAtt":
                return self.getatt(*arg)
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                text, variables = arg
                return self.sub(text, {k: self.resolve(v) for k, v in variables.items()})
            if key == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::Equals":
                a, b = (self.resolve(v) for v in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(v) for v in arg)
            if key == "Fn::Or":
                return any(self.resolve(v) for v in arg)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                delimiter, text = arg
                return self.resolve(text).split(delimiter)
            if key == "Fn::Join":
                delimiter, items = arg
                return delimiter.join(str(v) for v in self.resolve(items))
            if key.startswith("Fn::"):
                fail(f"cfn: {key} is not supported by this checker")
        out = {}
        for key, value in node.items():
            value = self.resolve(value)
            if value is not NO_VALUE:
                out[key] = value
        return out


def check_parameter(name, spec, value):
    """CloudFormation's own parameter checks, for the constraints the template uses."""
    problems = []
    kind = spec.get("Type", "String")
    if kind == "Number":
        try:
            number = float(value)
        except ValueError:
            return [f"{name}={value!r}: not a number"]
        if "MinValue" in spec and number < float(spec["MinValue"]):
            problems.append(f"{name}={value!r}: below MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            problems.append(f"{name}={value!r}: above MaxValue {spec['MaxValue']}")
    if kind == "String":
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            problems.append(f"{name}={value!r}: does not match AllowedPattern {spec['AllowedPattern']}")
        if "MinLength" in spec and len(value) < int(spec["MinLength"]):
            problems.append(f"{name}={value!r}: shorter than MinLength {spec['MinLength']}")
    if "AllowedValues" in spec and str(value) not in [str(v) for v in spec["AllowedValues"]]:
        problems.append(f"{name}={value!r}: not one of {spec['AllowedValues']}")
    return problems


def cfn(path, params_json):
    with open(path) as f:
        template = yaml.load(f, Loader=CfnLoader)  # a SafeLoader subclass: no arbitrary objects
    given = json.loads(params_json)
    params, violations = {}, []
    for name, spec in template.get("Parameters", {}).items():
        if name in given:
            value = given[name]
        elif "Default" in spec:
            value = spec["Default"]
        else:
            fail(f"cfn: parameter {name} has no default: give it a value")
        if spec.get("Type", "").startswith("List<"):
            value = value if isinstance(value, list) else [v for v in str(value).split(",") if v]
        else:
            value = str(value)
            violations += check_parameter(name, spec, value)
        params[name] = value
    unknown = sorted(set(given) - set(params))
    if unknown:
        fail(f"cfn: no such parameters: {', '.join(unknown)}")
    resolver = Resolver(template, params)
    resources = {}
    for name, resource in template.get("Resources", {}).items():
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        resources[name] = {
            "Type": resource.get("Type"),
            "Properties": resolver.resolve(resource.get("Properties", {})),
            **{k: resource[k] for k in ("DeletionPolicy", "UpdateReplacePolicy") if k in resource},
        }
    outputs = {}
    for name, output in template.get("Outputs", {}).items():
        if "Condition" in output and not resolver.condition(output["Condition"]):
            continue
        outputs[name] = resolver.resolve(output["Value"])
    print(json.dumps({"violations": violations, "resources": resources, "outputs": outputs}))


# ---------------------------------------------------------------- setup_resources.py


def setup_pattern(bucket=None, prefix=None):
    sys.path.insert(0, str(REPO / "scripts"))
    import setup_resources

    pattern = setup_resources.load_pattern(setup_resources.DEFAULT_PATTERN_FILE, bucket, prefix)
    print(json.dumps(pattern))


def main(argv):
    if not argv:
        fail("usage: deploy_check.py compose|yaml|cfn|setup-pattern ...")
    command, args = argv[0], argv[1:]
    if command == "compose" and len(args) in (2, 3):
        compose(*args)
    elif command == "yaml" and len(args) == 1:
        plain_yaml(*args)
    elif command == "cfn" and len(args) == 2:
        cfn(*args)
    elif command == "setup-pattern" and len(args) <= 2:
        setup_pattern(*args)
    else:
        fail(f"bad arguments: {argv}")


if __name__ == "__main__":
    main(sys.argv[1:])
