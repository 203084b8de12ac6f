"""Translates a SAM template into plain CloudFormation with aws-sam-translator, offline.

cfn-lint checks the result: it sees the resources SAM generates (the function URL with its
InvokeMode, the role, the permissions), which cfn-lint alone, on the SAM template, does not.

Usage: sam_transform.py TEMPLATE OUT.json
"""

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    """The template names no AWS managed policies, so none need looking up (which needs AWS)."""

    def load(self):
        return {}


def main():
    # The translation fills in pseudo parameters (AWS::Region) from the environment; no AWS call.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with open(sys.argv[1]) as f:
        template = yaml_parse(f.read())
    # What `sam package` does before CloudFormation sees it: local code becomes an S3 object.
    for resource in template.get("Resources", {}).values():
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function" and not str(properties.get("CodeUri", "")).startswith("s3://"):
            properties["CodeUri"] = "s3://registry-mirror-artifacts/registry-mirror-lambda.zip"
    output = transform(template, {}, NoManagedPolicies())
    with open(sys.argv[2], "w") as f:
        json.dump(output, f, indent=1)


if __name__ == "__main__":
    main()
