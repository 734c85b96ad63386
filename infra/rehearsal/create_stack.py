"""Step 2 of the deploy rehearsal (scripts/rehearse-deploy): the translated
template created as a stack in the local AWS-compatible server's
CloudFormation (moto). Resource types that server does not model are left
out, and references to them become placeholders; they are listed in the
report. Prints one JSON report: the stack's status, every resource's, the
types left out, and each function's environment as CloudFormation resolved
it (what the functions would run with)."""
import importlib
import io
import json
import sys
import time
import zipfile

import boto3
from moto.cloudformation.parsing import get_model_map

SERVICES = ["apigatewayv2", "applicationautoscaling", "cloudfront", "s3", "ecs", "elbv2", "ec2", "events", "iam", "awslambda", "logs", "dynamodb"]


def supported_types():
    for service in SERVICES:
        importlib.import_module(f"moto.{service}.models")
    return set(get_model_map())


def strip(value, dropped):
    """`value` with every reference to a dropped resource replaced."""
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in dropped:
            return f"placeholder-{value['Ref']}"
        if set(value) == {"Fn::GetAtt"}:
            target = value["Fn::GetAtt"]
            name = target[0] if isinstance(target, list) else target.split(".")[0]
            if name in dropped:
                return f"placeholder-{name}"
        if set(value) == {"Fn::Sub"}:
            sub = value["Fn::Sub"]
            text, variables = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
            for name in dropped:
                for suffix in (".DomainName", ".Id", ".Arn", ""):
                    text = text.replace("${" + name + suffix + "}", f"placeholder-{name}")
            return {"Fn::Sub": text if not variables else [text, strip(variables, dropped)]}
        return {k: strip(v, dropped) for k, v in value.items()}
    if isinstance(value, list):
        return [strip(v, dropped) for v in value]
    return value


def main(endpoint, stack_name, artifacts_bucket, parameters_json):
    doc = json.load(sys.stdin)
    cfn, binaries = doc["template"], doc["binaries"]
    supported = supported_types()
    dropped = {n: r["Type"] for n, r in cfn["Resources"].items() if r["Type"] not in supported}
    resources = {}
    for name, resource in cfn["Resources"].items():
        if name in dropped:
            continue
        resource = strip(resource, dropped)
        depends = resource.get("DependsOn")
        if isinstance(depends, str):
            depends = [depends]
        if depends is not None:
            depends = [d for d in depends if d not in dropped]
            if depends:
                resource["DependsOn"] = depends
            else:
                resource.pop("DependsOn")
        resources[name] = resource
    cfn["Resources"] = resources
    outputs = {k: v for k, v in strip(cfn.get("Outputs", {}), dropped).items()}
    cfn["Outputs"] = outputs
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local")
    s3 = boto3.client("s3", **kw)
    s3.create_bucket(Bucket=artifacts_bucket)
    for binary in binaries.values():
        # The server never runs the code (no Docker here): a placeholder
        # bootstrap stands for the binary that `sam build` packages.
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("bootstrap", f"#!/bin/sh\n# {binary}\n")
        s3.put_object(Bucket=artifacts_bucket, Key=f"{binary}.zip", Body=buf.getvalue())
    cf = boto3.client("cloudformation", **kw)
    parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in json.loads(parameters_json).items()]
    cf.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(cfn),
        Parameters=parameters,
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    for _ in range(120):
        stack = cf.describe_stacks(StackName=stack_name)["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS"):
            break
        time.sleep(0.5)
    summaries = cf.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId") for r in summaries}
    lam = boto3.client("lambda", **kw)
    functions = {}
    for name, binary in binaries.items():
        config = lam.get_function_configuration(FunctionName=physical[name])
        functions[binary] = config.get("Environment", {}).get("Variables", {})
    report = {
        "stack": stack_name,
        "status": stack["StackStatus"],
        "reason": stack.get("StackStatusReason"),
        "resources": {r["LogicalResourceId"]: [r["ResourceType"], r["ResourceStatus"], r.get("PhysicalResourceId")] for r in summaries},
        "left_out": dropped,
        "functions": functions,
    }
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:5])
