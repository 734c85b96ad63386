"""Step 1 of the deploy rehearsal (scripts/rehearse-deploy): the SAM template
translated to plain CloudFormation by samtranslator, as `sam deploy` does,
with each function's code at s3://{artifacts bucket}/{binary}.zip (where
`sam package` would put it). Prints the CloudFormation JSON."""
import json
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The template names no AWS managed policies by name."""

    def load(self):
        return {}


def main(template_path, artifacts_bucket):
    template = yaml_parse(open(template_path).read())
    binaries = {}
    for name, resource in template["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Function":
            binary = resource["Metadata"]["BuildProperties"]["Binary"]
            resource["Properties"]["CodeUri"] = f"s3://{artifacts_bucket}/{binary}.zip"
            binaries[name] = binary
    cfn = transform(template, {}, NoManagedPolicies())
    json.dump({"template": cfn, "binaries": binaries}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
